//! Browser tokens: the code lives in [`tributary_runtime::token`], shared with the realtime
//! bridge so both binaries verify tokens identically.

pub use tributary_runtime::token::*;

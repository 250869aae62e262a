//! How a file is cut into parts: S3 allows at most 10,000 parts of 5 MiB to 5 GiB each (the
//! last may be smaller). We choose 8–64 MiB parts: small enough that a retry on a shaky mobile
//! network re-sends little, large enough that a 7 GiB file needs under 1,000 requests.

/// Smallest part we hand out.
pub const MIN_PART_SIZE: u64 = 8 * MIB;
/// Largest part we hand out.
pub const MAX_PART_SIZE: u64 = 64 * MIB;
/// S3's limit on the number of parts of one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// Part count the planner aims for before growing parts beyond the minimum.
const TARGET_PARTS: u64 = 1_000;
const MIB: u64 = 1024 * 1024;

/// The part layout of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Size of every part but the last.
    pub part_size: u64,
    /// Number of parts (at least 1).
    pub part_count: u32,
    /// Size of the last part.
    pub last_part_size: u64,
}

/// Why a size cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Empty files are not uploads.
    #[error("size must be at least 1 byte")]
    Empty,
    /// More than 10,000 parts of the largest part size.
    #[error("size {0} exceeds the largest upload storage accepts ({max} bytes)", max = MAX_PART_SIZE * MAX_PARTS)]
    TooLarge(u64),
}

impl PartPlan {
    /// Plans `size` bytes.
    pub fn for_size(size: u64) -> Result<Self, PlanError> {
        if size == 0 {
            return Err(PlanError::Empty);
        }
        if size > MAX_PART_SIZE * MAX_PARTS {
            return Err(PlanError::TooLarge(size));
        }
        // Whole MiB, between the bounds, aiming at TARGET_PARTS parts.
        let wanted = size.div_ceil(TARGET_PARTS).div_ceil(MIB) * MIB;
        let part_size = wanted.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        let part_count = size.div_ceil(part_size);
        let last_part_size = size - (part_count - 1) * part_size;
        Ok(Self {
            part_size,
            // Bounded by MAX_PARTS above.
            part_count: u32::try_from(part_count).unwrap_or(u32::MAX),
            last_part_size,
        })
    }

    /// The exact size part `number` (1-based) must have, or `None` if there is no such part.
    pub fn expected_size(&self, number: u32) -> Option<u64> {
        match number {
            0 => None,
            n if n < self.part_count => Some(self.part_size),
            n if n == self.part_count => Some(self.last_part_size),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn seven_gib_uses_8_mib_parts_well_under_the_limit() {
        let plan = PartPlan::for_size(7 * GIB).expect("plannable");
        assert_eq!(plan.part_size, 8 * MIB);
        assert_eq!(plan.part_count, 896);
        assert_eq!(plan.last_part_size, 8 * MIB);
    }

    #[test]
    fn small_files_are_one_part() {
        let plan = PartPlan::for_size(1234).expect("plannable");
        assert_eq!((plan.part_count, plan.last_part_size), (1, 1234));
        assert_eq!(plan.expected_size(1), Some(1234));
        assert_eq!(plan.expected_size(0), None);
        assert_eq!(plan.expected_size(2), None);
    }

    #[test]
    fn parts_grow_for_big_files_and_never_exceed_10000() {
        for size in [8 * MIB + 1, 100 * GIB, 500 * GIB, MAX_PART_SIZE * MAX_PARTS] {
            let plan = PartPlan::for_size(size).expect("plannable");
            assert!(plan.part_size >= MIN_PART_SIZE && plan.part_size <= MAX_PART_SIZE);
            assert!(u64::from(plan.part_count) <= MAX_PARTS, "{size}: {plan:?}");
            assert!(plan.last_part_size >= 1 && plan.last_part_size <= plan.part_size);
            assert_eq!(
                (u64::from(plan.part_count) - 1) * plan.part_size + plan.last_part_size,
                size
            );
        }
        assert_eq!(
            PartPlan::for_size(100 * GIB).expect("plan").part_size,
            64 * MIB
        );
    }

    #[test]
    fn empty_and_oversize_are_refused() {
        assert_eq!(PartPlan::for_size(0), Err(PlanError::Empty));
        let too_big = MAX_PART_SIZE * MAX_PARTS + 1;
        assert_eq!(
            PartPlan::for_size(too_big),
            Err(PlanError::TooLarge(too_big))
        );
    }
}

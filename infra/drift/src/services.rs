//! Services: the workspace's binaries against the instances of `modules/service`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::Body;

use crate::terraform::{self, Terraform, display_path};
use crate::{Drift, LoadError};

/// One binary target of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// The binary's name (what the container runs).
    pub name: String,
    /// The package that builds it.
    pub package: String,
}

/// A binary that is deliberately not deployed as a service, and why (a row of the test's table).
#[derive(Debug, Clone, Copy)]
pub struct NotAService {
    /// Binary name.
    pub binary: &'static str,
    /// Why it has no `modules/service` instance.
    pub why: &'static str,
}

/// Every binary target of the workspace at `root`, from the Cargo manifests: explicit
/// `[[bin]]` targets plus cargo's automatic ones (`src/main.rs`, `src/bin/*.rs`,
/// `src/bin/*/main.rs`) unless `autobins = false`.
pub fn workspace_binaries(root: &Path) -> Result<Vec<Binary>, LoadError> {
    let manifest_path = root.join("Cargo.toml");
    let manifest = read_toml(&manifest_path)?;
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .ok_or_else(|| LoadError::Manifest {
            path: manifest_path.clone(),
            message: "no [workspace] members list".into(),
        })?;
    let mut binaries = Vec::new();
    for member in members {
        let member = member.as_str().ok_or_else(|| LoadError::Manifest {
            path: manifest_path.clone(),
            message: format!("workspace member {member} is not a string"),
        })?;
        for dir in expand_member(root, member, &manifest_path)? {
            binaries.extend(package_binaries(&dir)?);
        }
    }
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(binaries)
}

/// `dir` or, for a trailing `/*`, every directory in it holding a Cargo.toml.
fn expand_member(root: &Path, member: &str, manifest: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let Some(parent) = member.strip_suffix("/*") else {
        if member.contains(['*', '?', '[']) {
            return Err(LoadError::Manifest {
                path: manifest.to_path_buf(),
                message: format!(
                    "workspace member pattern {member:?} is not supported (only dir/*)"
                ),
            });
        }
        return Ok(vec![root.join(member)]);
    };
    let dir = root.join(parent);
    let mut dirs = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|source| LoadError::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in entries.flatten() {
        if entry.path().join("Cargo.toml").is_file() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn read_toml(path: &Path) -> Result<toml::Table, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|source| LoadError::Toml {
            path: path.to_path_buf(),
            source,
        })
}

fn package_binaries(dir: &Path) -> Result<Vec<Binary>, LoadError> {
    let path = dir.join("Cargo.toml");
    let manifest = read_toml(&path)?;
    let package = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| LoadError::Manifest {
            path: path.clone(),
            message: "no package.name".into(),
        })?
        .to_string();
    let autobins = manifest
        .get("package")
        .and_then(|p| p.get("autobins"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(true);

    // (name, source path relative to the package) of every binary.
    let mut found: Vec<(String, Option<PathBuf>)> = Vec::new();
    if let Some(bins) = manifest.get("bin").and_then(toml::Value::as_array) {
        for bin in bins {
            let name = bin
                .get("name")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| LoadError::Manifest {
                    path: path.clone(),
                    message: "a [[bin]] without a name".into(),
                })?;
            let source = bin
                .get("path")
                .and_then(toml::Value::as_str)
                .map(PathBuf::from);
            found.push((name.to_string(), source));
        }
    }
    if autobins {
        let mut inferred = Vec::new();
        if dir.join("src/main.rs").is_file() {
            inferred.push((package.clone(), PathBuf::from("src/main.rs")));
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for entry in entries.flatten() {
                let entry_path = entry.path();
                let relative = PathBuf::from("src/bin").join(entry.file_name());
                if entry_path.extension().is_some_and(|ext| ext == "rs") {
                    if let Some(stem) = entry_path.file_stem() {
                        inferred.push((stem.to_string_lossy().into_owned(), relative));
                    }
                } else if entry_path.join("main.rs").is_file() {
                    inferred.push((
                        entry.file_name().to_string_lossy().into_owned(),
                        relative.join("main.rs"),
                    ));
                }
            }
        }
        for (name, source) in inferred {
            let taken = found
                .iter()
                .any(|(n, p)| *n == name || p.as_deref() == Some(source.as_path()));
            if !taken {
                found.push((name, Some(source)));
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, _)| Binary {
            name,
            package: package.clone(),
        })
        .collect())
}

/// One `module` block whose `source` is `modules/service`.
#[derive(Debug, Clone)]
pub struct ServiceInstance<'a> {
    /// The module block's label (`module "ingest_api"`).
    pub module: String,
    /// Its file, for messages.
    pub file: String,
    /// Its `name`: the binary it runs.
    pub name: String,
    /// Its body, for the IAM checks.
    pub body: &'a Body,
}

/// Whether a module `source` points at the service module.
pub fn is_service_source(source: &str) -> bool {
    source.trim_end_matches('/').ends_with("modules/service")
}

/// Every service module instance; a non-literal `name` becomes a drift.
pub fn service_instances(tf: &Terraform) -> (Vec<ServiceInstance<'_>>, Vec<Drift>) {
    let mut instances = Vec::new();
    let mut drifts = Vec::new();
    for (path, block) in tf.blocks("module") {
        let source = terraform::attr(&block.body, "source").and_then(terraform::as_str);
        if !source.is_some_and(is_service_source) {
            continue;
        }
        let module = terraform::label(block, 0)
            .unwrap_or("<unnamed>")
            .to_string();
        let file = display_path(path);
        match terraform::attr(&block.body, "name").and_then(terraform::as_str) {
            Some(name) => instances.push(ServiceInstance {
                module,
                file,
                name: name.to_string(),
                body: &block.body,
            }),
            None => drifts.push(Drift::NotLiteral {
                file,
                what: format!("module.{module}.name"),
            }),
        }
    }
    (instances, drifts)
}

/// Every binary without a service, every service without a binary, every duplicate.
pub fn check_services(
    binaries: &[Binary],
    not_services: &[NotAService],
    tf: &Terraform,
) -> Vec<Drift> {
    let (instances, mut drifts) = service_instances(tf);
    let mut deployed: BTreeMap<&str, &ServiceInstance<'_>> = BTreeMap::new();
    for instance in &instances {
        if deployed.insert(&instance.name, instance).is_some() {
            drifts.push(Drift::ServiceDuplicate {
                name: instance.name.clone(),
                file: instance.file.clone(),
            });
        }
    }
    for binary in binaries {
        let exempt = not_services.iter().any(|n| n.binary == binary.name);
        if !exempt && !deployed.contains_key(binary.name.as_str()) {
            drifts.push(Drift::ServiceMissing {
                binary: binary.name.clone(),
                package: binary.package.clone(),
            });
        }
    }
    for instance in deployed.values() {
        if !binaries.iter().any(|b| b.name == instance.name) {
            drifts.push(Drift::ServiceUnknown {
                module: instance.module.clone(),
                file: instance.file.clone(),
                name: instance.name.clone(),
            });
        }
    }
    drifts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(name: &str) -> Binary {
        Binary {
            name: name.into(),
            package: "p".into(),
        }
    }

    const SERVICES: &str = r#"
module "api" {
  source = "../../modules/service"
  name   = "api"
}
module "worker" {
  source = "../../modules/service/"
  name   = "ghost"
}
module "other" {
  source = "../../modules/storage"
  name   = "not-a-service"
}
"#;

    #[test]
    fn missing_unknown_and_exempt_binaries() {
        let tf = Terraform::parse("main.tf", SERVICES).expect("hcl");
        let exempt = [NotAService {
            binary: "cli",
            why: "run by hand",
        }];
        let drifts = check_services(
            &[binary("api"), binary("worker"), binary("cli")],
            &exempt,
            &tf,
        );
        let messages = crate::report(&drifts);
        assert_eq!(drifts.len(), 2, "{messages}");
        assert!(messages.contains("binary worker (package p) has no `module`"));
        assert!(messages.contains("module worker (main.tf) deploys ghost"));
    }

    #[test]
    fn the_real_workspace_has_the_known_binaries() {
        // Read at run time: a compile-time path goes stale in a shared target directory.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = dir.join("../..");
        let names: Vec<String> = workspace_binaries(&root)
            .expect("workspace manifests")
            .into_iter()
            .map(|b| b.name)
            .collect();
        for expected in ["ingest-api", "projector", "assembler", "janitor"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }
}

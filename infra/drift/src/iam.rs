//! IAM: what each service may do, against what terraform grants it.
//!
//! S3 permissions reach a service only through two inputs of its `modules/service` instance:
//! `s3_object_grants` (a list of `{ keys = "<key pattern>", actions = [...] }`, the pattern
//! relative to the bucket) and `s3_bucket_actions` (actions on the bucket itself). The module
//! turns them into the task role's policy. [`check_s3`] holds each instance to its row of the
//! rule table; [`check_stray_actions`] makes sure no other path exists (the module itself and
//! the environments never name an `s3:` action, and only allowed `kafka-cluster:` ones).

use hcl::Expression;

use crate::Drift;
use crate::services::service_instances;
use crate::terraform::{self, Terraform, display_path};

/// Actions a service may perform on objects matching one key pattern.
#[derive(Debug, Clone, Copy)]
pub struct ObjectGrant {
    /// Key pattern relative to the bucket, as written in the HCL (`uploads/*/original`).
    pub keys: &'static str,
    /// Allowed actions on those keys.
    pub actions: &'static [&'static str],
}

/// One row of the rule table: everything a service may do in S3.
#[derive(Debug, Clone, Copy)]
pub struct S3Rule {
    /// The service (its binary's name).
    pub service: &'static str,
    /// Object-level grants it may have.
    pub objects: &'static [ObjectGrant],
    /// Bucket-level actions it may have.
    pub bucket: &'static [&'static str],
    /// Why, in one line (shown nowhere but the table; it is for the reader).
    pub why: &'static str,
}

/// The attribute of a service instance listing object grants.
pub const OBJECT_GRANTS: &str = "s3_object_grants";
/// The attribute of a service instance listing bucket actions.
pub const BUCKET_ACTIONS: &str = "s3_bucket_actions";

/// Every S3 grant of every service instance that its rule does not allow.
pub fn check_s3(rules: &[S3Rule], tf: &Terraform) -> Vec<Drift> {
    let (instances, mut drifts) = service_instances(tf);
    for instance in &instances {
        let Some(rule) = rules.iter().find(|rule| rule.service == instance.name) else {
            drifts.push(Drift::IamNoRule {
                service: instance.name.clone(),
            });
            continue;
        };
        let not_literal = |attribute: &str| Drift::NotLiteral {
            file: instance.file.clone(),
            what: format!("module.{}.{attribute}", instance.module),
        };

        if let Some(grants) = terraform::attr(instance.body, OBJECT_GRANTS) {
            match read_grants(grants) {
                Some(grants) => {
                    for (keys, actions) in grants {
                        for action in actions {
                            let allowed = rule
                                .objects
                                .iter()
                                .any(|g| g.keys == keys && g.actions.contains(&action));
                            if !allowed {
                                drifts.push(Drift::IamObjectAction {
                                    service: instance.name.clone(),
                                    file: instance.file.clone(),
                                    action: action.to_string(),
                                    resource: keys.to_string(),
                                });
                            }
                        }
                    }
                }
                None => drifts.push(not_literal(OBJECT_GRANTS)),
            }
        }

        if let Some(actions) = terraform::attr(instance.body, BUCKET_ACTIONS) {
            match terraform::as_str_list(actions) {
                Some(actions) => {
                    for action in actions {
                        if !rule.bucket.contains(&action) {
                            drifts.push(Drift::IamBucketAction {
                                service: instance.name.clone(),
                                file: instance.file.clone(),
                                action: action.to_string(),
                            });
                        }
                    }
                }
                None => drifts.push(not_literal(BUCKET_ACTIONS)),
            }
        }
    }
    drifts
}

/// `[{ keys = "...", actions = ["..."] }, ...]` as `(keys, actions)`; `None` unless all literal.
fn read_grants(expr: &Expression) -> Option<Vec<(&str, Vec<&str>)>> {
    let Expression::Array(items) = expr else {
        return None;
    };
    items
        .iter()
        .map(|item| {
            let keys = terraform::object_get(item, "keys").and_then(terraform::as_str)?;
            let actions =
                terraform::object_get(item, "actions").and_then(terraform::as_str_list)?;
            Some((keys, actions))
        })
        .collect()
}

/// IAM actions named where a service could receive them without [`check_s3`] seeing them:
/// in files whose path contains one of `scopes` (the service module, the environments), any
/// `s3:` action outside the two grant attributes, and any `kafka-cluster:` action not in
/// `kafka_allowed`.
pub fn check_stray_actions(tf: &Terraform, scopes: &[&str], kafka_allowed: &[&str]) -> Vec<Drift> {
    let mut drifts = Vec::new();
    for file in &tf.files {
        let path = file.path.to_string_lossy();
        if !scopes.iter().any(|scope| path.contains(scope)) {
            continue;
        }
        let mut strings = Vec::new();
        // Descriptions are documentation: they may name actions without granting them.
        terraform::strings_in_body(
            &file.body,
            &[OBJECT_GRANTS, BUCKET_ACTIONS, "description"],
            &mut strings,
        );
        for action in strings.iter().flat_map(|s| action_tokens(s)) {
            let why = if action.starts_with("s3:") {
                "S3 access is granted only through the rule-checked inputs"
            } else if !kafka_allowed.contains(&action) {
                "not in the allowed kafka-cluster actions"
            } else {
                continue;
            };
            let drift = Drift::IamStrayAction {
                file: display_path(&file.path),
                action: action.to_string(),
                why: why.into(),
            };
            if !drifts.contains(&drift) {
                drifts.push(drift);
            }
        }
    }
    drifts
}

/// Words of a string that look like `s3:` or `kafka-cluster:` IAM actions (also inside JSON
/// or a heredoc policy).
fn action_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '*' | '-')))
        .filter(|word| {
            ["s3:", "kafka-cluster:"]
                .iter()
                .any(|prefix| word.len() > prefix.len() && word.starts_with(prefix))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &[S3Rule] = &[S3Rule {
        service: "api",
        objects: &[ObjectGrant {
            keys: "uploads/*/original",
            actions: &["s3:PutObject"],
        }],
        bucket: &["s3:ListBucket"],
        why: "test",
    }];

    #[test]
    fn grants_outside_the_rule_are_reported() {
        let tf = Terraform::parse(
            "env/main.tf",
            r#"
module "api" {
  source            = "../../modules/service"
  name              = "api"
  s3_object_grants  = [{ keys = "uploads/*/original", actions = ["s3:PutObject", "s3:GetObject"] }, { keys = "*", actions = ["s3:PutObject"] }]
  s3_bucket_actions = ["s3:ListBucket", "s3:ListBucketVersions"]
}
module "bridge" {
  source = "../../modules/service"
  name   = "bridge"
}
"#,
        )
        .expect("hcl");
        let drifts = check_s3(RULES, &tf);
        let messages = crate::report(&drifts);
        assert_eq!(drifts.len(), 4, "{messages}");
        assert!(
            messages.contains(
                "service api (env/main.tf) is granted s3:GetObject on uploads/*/original"
            )
        );
        assert!(messages.contains("granted s3:PutObject on *,"));
        assert!(messages.contains("granted s3:ListBucketVersions on the bucket"));
        assert!(messages.contains("service bridge has no row"));
    }

    #[test]
    fn computed_grants_are_not_trusted() {
        let tf = Terraform::parse(
            "env/main.tf",
            "module \"api\" {\n  source = \"../../modules/service\"\n  name = \"api\"\n  s3_object_grants = local.grants\n}\n",
        )
        .expect("hcl");
        let drifts = check_s3(RULES, &tf);
        assert!(
            matches!(drifts.as_slice(), [Drift::NotLiteral { what, .. }] if what == "module.api.s3_object_grants")
        );
    }

    #[test]
    fn stray_actions_are_found_in_policies_of_any_shape() {
        let tf = Terraform::parse(
            "modules/service/iam.tf",
            r#"
data "aws_iam_policy_document" "kafka" {
  statement {
    actions = ["kafka-cluster:Connect", "kafka-cluster:DeleteTopic"]
  }
}
resource "aws_iam_role_policy" "extra" {
  policy = <<EOT
{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
EOT
}
"#,
        )
        .expect("hcl");
        let drifts = check_stray_actions(&tf, &["modules/service"], &["kafka-cluster:Connect"]);
        let messages = crate::report(&drifts);
        assert_eq!(drifts.len(), 2, "{messages}");
        assert!(messages.contains("kafka-cluster:DeleteTopic"));
        assert!(messages.contains("IAM action s3:GetObject"));
        assert!(check_stray_actions(&tf, &["environments/"], &[]).is_empty());
    }
}

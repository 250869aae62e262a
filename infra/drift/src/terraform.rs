//! Terraform sources parsed with `hcl-rs`, and the few lookups the checks need.
//!
//! Nothing is evaluated: a value is read only when it is a literal (a string, a number, a list
//! or an object of literals). That is deliberate: the drift test must not need providers or
//! credentials, and literal declarations are what a reviewer reads too.

use std::path::{Path, PathBuf};

use hcl::{Block, BlockLabel, Body, Expression, ObjectKey};

use crate::LoadError;

/// One parsed `.tf` file.
#[derive(Debug, Clone)]
pub struct TerraformFile {
    /// Path as given (relative to the loaded directory's parent when loaded from disk).
    pub path: PathBuf,
    /// The parsed body.
    pub body: Body,
}

/// A set of parsed `.tf` files: a whole tree, or one fixture.
#[derive(Debug, Clone, Default)]
pub struct Terraform {
    /// The files, in path order.
    pub files: Vec<TerraformFile>,
}

impl Terraform {
    /// Parses every `*.tf` file below `dir` (recursively, skipping `.terraform/` caches).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let mut paths = Vec::new();
        collect_tf_files(dir, &mut paths)?;
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(parse_file(path, &text)?);
        }
        Ok(Self { files })
    }

    /// Parses one file's text (fixtures and unit tests).
    pub fn parse(path: impl Into<PathBuf>, text: &str) -> Result<Self, LoadError> {
        Ok(Self {
            files: vec![parse_file(path.into(), text)?],
        })
    }

    /// Top-level blocks of kind `identifier` (`resource`, `module`, ...), with their file.
    pub fn blocks<'a>(
        &'a self,
        identifier: &'a str,
    ) -> impl Iterator<Item = (&'a Path, &'a Block)> + 'a {
        self.files.iter().flat_map(move |file| {
            file.body
                .blocks()
                .filter(move |block| block.identifier.as_str() == identifier)
                .map(move |block| (file.path.as_path(), block))
        })
    }

    /// The files whose path contains `fragment` (e.g. `modules/service`).
    pub fn files_under<'a>(&'a self, fragment: &'a str) -> impl Iterator<Item = &'a TerraformFile> {
        self.files
            .iter()
            .filter(move |file| file.path.to_string_lossy().contains(fragment))
    }
}

fn parse_file(path: PathBuf, text: &str) -> Result<TerraformFile, LoadError> {
    match hcl::parse(text) {
        Ok(body) => Ok(TerraformFile { path, body }),
        Err(source) => Err(LoadError::Hcl { path, source }),
    }
}

fn collect_tf_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() != ".terraform" {
                collect_tf_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|ext| ext == "tf") {
            out.push(path);
        }
    }
    Ok(())
}

/// The `index`th label of a block (`resource "TYPE" "NAME"`: 0 is the type, 1 the name).
pub fn label(block: &Block, index: usize) -> Option<&str> {
    block.labels.get(index).map(|label| match label {
        BlockLabel::String(s) => s.as_str(),
        BlockLabel::Identifier(id) => id.as_str(),
    })
}

/// The expression of attribute `key` in `body`, if present.
pub fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| &attribute.expr)
}

/// A string literal (no interpolation).
pub fn as_str(expr: &Expression) -> Option<&str> {
    match expr {
        Expression::String(s) => Some(s.as_str()),
        Expression::Parenthesis(inner) => as_str(inner),
        _ => None,
    }
}

/// An integer literal: a number, a negated number, or a string holding one (Kafka topic
/// configs are strings, e.g. `"retention.ms" = "-1"`).
pub fn as_i64(expr: &Expression) -> Option<i64> {
    match expr {
        Expression::Number(n) => n.as_i64(),
        Expression::String(s) => s.trim().parse().ok(),
        Expression::Parenthesis(inner) => as_i64(inner),
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(unary)
                if unary.operator == hcl::expr::UnaryOperator::Neg =>
            {
                as_i64(&unary.expr).and_then(i64::checked_neg)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The value of key `key` in an object literal.
pub fn object_get<'a>(expr: &'a Expression, key: &str) -> Option<&'a Expression> {
    let Expression::Object(object) = expr else {
        return None;
    };
    object.iter().find_map(|(k, v)| {
        let name = match k {
            ObjectKey::Identifier(id) => Some(id.as_str()),
            ObjectKey::Expression(e) => as_str(e),
            _ => None,
        };
        (name == Some(key)).then_some(v)
    })
}

/// A list of string literals; `None` if it is not a list or an element is not a literal.
pub fn as_str_list(expr: &Expression) -> Option<Vec<&str>> {
    match expr {
        Expression::Array(items) => items.iter().map(as_str).collect(),
        _ => None,
    }
}

/// Every string in `body`, literal or template source, in attributes and nested blocks,
/// except under attributes named in `skip` (at any depth).
pub fn strings_in_body<'a>(body: &'a Body, skip: &[&str], out: &mut Vec<&'a str>) {
    for attribute in body.attributes() {
        if !skip.contains(&attribute.key.as_str()) {
            strings_in_expr(&attribute.expr, out);
        }
    }
    for block in body.blocks() {
        strings_in_body(&block.body, skip, out);
    }
}

/// Every string in an expression, literal or template source.
pub fn strings_in_expr<'a>(expr: &'a Expression, out: &mut Vec<&'a str>) {
    match expr {
        Expression::String(s) => out.push(s.as_str()),
        Expression::TemplateExpr(template) => match template.as_ref() {
            hcl::expr::TemplateExpr::QuotedString(s) => out.push(s.as_str()),
            hcl::expr::TemplateExpr::Heredoc(heredoc) => out.push(heredoc.template.as_str()),
        },
        Expression::Array(items) => items.iter().for_each(|item| strings_in_expr(item, out)),
        Expression::Object(object) => {
            for (key, value) in object.iter() {
                if let ObjectKey::Expression(key) = key {
                    strings_in_expr(key, out);
                }
                strings_in_expr(value, out);
            }
        }
        Expression::Parenthesis(inner) => strings_in_expr(inner, out),
        Expression::Traversal(traversal) => strings_in_expr(&traversal.expr, out),
        Expression::FuncCall(call) => call.args.iter().for_each(|arg| strings_in_expr(arg, out)),
        Expression::Conditional(cond) => {
            strings_in_expr(&cond.cond_expr, out);
            strings_in_expr(&cond.true_expr, out);
            strings_in_expr(&cond.false_expr, out);
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(unary) => strings_in_expr(&unary.expr, out),
            hcl::expr::Operation::Binary(binary) => {
                strings_in_expr(&binary.lhs_expr, out);
                strings_in_expr(&binary.rhs_expr, out);
            }
        },
        Expression::ForExpr(for_expr) => {
            strings_in_expr(&for_expr.collection_expr, out);
            if let Some(key) = &for_expr.key_expr {
                strings_in_expr(key, out);
            }
            strings_in_expr(&for_expr.value_expr, out);
            if let Some(cond) = &for_expr.cond_expr {
                strings_in_expr(cond, out);
            }
        }
        // Null, booleans, numbers, variables, and whatever later versions of hcl-rs add.
        _ => {}
    }
}

/// A path for messages: relative to the repository when possible.
pub fn display_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    match text.find("infra/") {
        Some(at) => text[at..].to_string(),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_read_and_expressions_are_not_guessed() {
        let tf = Terraform::parse(
            "t.tf",
            r#"
resource "kafka_topic" "t" {
  name       = "a"
  partitions = 12
  neg        = -1
  config = {
    "retention.ms" = "-1"
    plain          = "x"
  }
  computed = var.partitions
}
"#,
        )
        .expect("valid hcl");
        let (_, block) = tf.blocks("resource").next().expect("one block");
        assert_eq!(label(block, 0), Some("kafka_topic"));
        assert_eq!(label(block, 1), Some("t"));
        assert_eq!(attr(&block.body, "partitions").and_then(as_i64), Some(12));
        assert_eq!(attr(&block.body, "neg").and_then(as_i64), Some(-1));
        let config = attr(&block.body, "config").expect("config");
        assert_eq!(
            object_get(config, "retention.ms").and_then(as_i64),
            Some(-1)
        );
        assert_eq!(object_get(config, "plain").and_then(as_str), Some("x"));
        assert_eq!(attr(&block.body, "computed").and_then(as_i64), None);
    }

    #[test]
    fn strings_are_found_everywhere_but_skipped_attributes() {
        let tf = Terraform::parse(
            "t.tf",
            r#"
data "aws_iam_policy_document" "d" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["${var.arn}/x/*"]
  }
}
module "m" {
  keep = jsonencode({ Action = ["kafka-cluster:Connect"] })
  skip = ["s3:PutObject"]
}
"#,
        )
        .expect("valid hcl");
        let mut found = Vec::new();
        for file in &tf.files {
            strings_in_body(&file.body, &["skip"], &mut found);
        }
        assert!(found.contains(&"s3:GetObject"));
        assert!(found.contains(&"kafka-cluster:Connect"));
        assert!(found.iter().any(|s| s.contains("/x/*")));
        assert!(!found.contains(&"s3:PutObject"));
    }

    #[test]
    fn invalid_hcl_names_the_file() {
        let error = Terraform::parse("broken.tf", "resource \"x\" {").expect_err("invalid");
        assert!(error.to_string().contains("broken.tf"), "{error}");
    }
}

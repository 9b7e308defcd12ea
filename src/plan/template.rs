//! Template rendering (minijinja) for `.j2` files, task parameters and `when:`
//! expressions. Undefined variables are errors, so a typo in a role fails at
//! the task that has it instead of writing an empty value to a host.

use minijinja::{Environment, UndefinedBehavior, Value};
use serde_json::Value as Json;

use crate::playbook::Playbook;

pub struct Templates {
    env: Environment<'static>,
}

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("default delimiters");
    env.set_syntax(syntax);
    env.add_filter("combine", combine);
    env.add_filter("mandatory", mandatory);
    env.add_function("file_text", file_text);
    env
}

/// `x | mandatory("why")`: x, or the task fails with the message when x is
/// undefined or none (Ansible's filter, with the message required): a role
/// that cannot work without an inventory setting says which.
fn mandatory(v: Value, msg: String) -> Result<Value, minijinja::Error> {
    if v.is_undefined() || v.is_none() {
        Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            msg,
        ))
    } else {
        Ok(v)
    }
}

/// `file_text(path)`: a text file on the controller, whole (a bundle's
/// manifest, to render with the cluster's values). A relative path is taken
/// from the working directory, as the bundle's paths are given.
fn file_text(path: String) -> Result<String, minijinja::Error> {
    std::fs::read_to_string(&path).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("file_text: cannot read {path}: {e}"),
        )
    })
}

/// `a | combine(b)`: a mapping with b's keys laid over a's, as in Ansible.
fn combine(a: Value, b: Value) -> Result<Value, minijinja::Error> {
    let bad = |e: serde_json::Error| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
    };
    let mut a: Json = serde_json::to_value(&a).map_err(bad)?;
    let b: Json = serde_json::to_value(&b).map_err(bad)?;
    match (a.as_object_mut(), b) {
        (Some(am), Json::Object(bm)) => am.extend(bm),
        _ => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "combine takes two mappings",
            ));
        }
    }
    Ok(Value::from(minijinja::value::Serde(a)))
}

/// Parse-only check of one template source; the error carries a line.
pub fn check_syntax(src: &str) -> Result<(), (String, usize)> {
    let env = base_env();
    match env.template_from_str(src) {
        Ok(_) => Ok(()),
        Err(e) => Err((
            format!(
                "template does not parse: {}",
                e.detail().unwrap_or(&e.to_string())
            ),
            e.line().unwrap_or(1),
        )),
    }
}

/// Whether any string in a parameter tree holds a template (`{{` or `{%`):
/// such parameters are known only once rendered on a host.
pub fn holds_template(v: &Json) -> bool {
    strings_in(v, "")
        .iter()
        .any(|(_, s)| s.contains("{{") || s.contains("{%"))
}

/// Every string in a parameter tree, with its field path.
pub fn strings_in(v: &Json, field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match v {
        Json::String(s) => out.push((field.to_string(), s.clone())),
        Json::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                out.extend(strings_in(x, &format!("{field}[{i}]")));
            }
        }
        Json::Object(m) => {
            for (k, x) in m {
                out.extend(strings_in(x, &format!("{field}.{k}")));
            }
        }
        _ => {}
    }
    out
}

fn render_err(what: &str, e: minijinja::Error) -> String {
    let mut s = format!("{what}: {}", e.kind());
    if let Some(d) = e.detail() {
        s.push_str(&format!(": {d}"));
    }
    if let Some(l) = e.line() {
        s.push_str(&format!(" (line {l})"));
    }
    s
}

impl Templates {
    pub fn new(pb: &Playbook) -> Self {
        let mut env = base_env();
        for role in pb.roles.values() {
            for (name, src) in &role.templates {
                // Syntax was checked at load time.
                let _ = env.add_template_owned(format!("{}/{name}", role.name), src.clone());
            }
        }
        Templates { env }
    }

    /// Variables a string or a role template refers to: top-level names, or
    /// with `nested` their attribute paths as far as they are fixed
    /// (`facts.ipv4`; `facts[k]` is just `facts`).
    pub fn referenced_in(&self, source: &str, nested: bool) -> std::collections::BTreeSet<String> {
        match self.env.template_from_str(source) {
            Ok(t) => t.undeclared_variables(nested).into_iter().collect(),
            Err(_) => Default::default(),
        }
    }

    pub fn referenced_in_file(
        &self,
        role: &str,
        name: &str,
        nested: bool,
    ) -> std::collections::BTreeSet<String> {
        match self.env.get_template(&format!("{role}/{name}")) {
            Ok(t) => t.undeclared_variables(nested).into_iter().collect(),
            Err(_) => Default::default(),
        }
    }

    pub fn render_file(&self, role: &str, name: &str, ctx: &Value) -> Result<String, String> {
        let t = self
            .env
            .get_template(&format!("{role}/{name}"))
            .map_err(|e| render_err(&format!("template {name}"), e))?;
        t.render(ctx)
            .map_err(|e| render_err(&format!("template {name}"), e))
    }

    pub fn render_str(&self, s: &str, ctx: &Value) -> Result<String, String> {
        if !s.contains("{{") && !s.contains("{%") {
            return Ok(s.to_string());
        }
        self.env
            .render_str(s, ctx)
            .map_err(|e| render_err(&format!("{s:?}"), e))
    }

    pub fn eval(&self, expr: &str, ctx: &Value) -> Result<Value, String> {
        let e = self
            .env
            .compile_expression(expr)
            .map_err(|e| render_err(&format!("expression {expr:?}"), e))?;
        e.eval(ctx)
            .map_err(|e| render_err(&format!("expression {expr:?}"), e))
    }

    /// Render every string in a parameter tree. A string that is exactly one
    /// `{{ expr }}` keeps the expression's type (a map stays a map), as in
    /// Ansible, so `values: "{{ sysctl }}"` passes a mapping.
    pub fn render_params(&self, v: &Json, ctx: &Value) -> Result<Json, String> {
        Ok(match v {
            Json::String(s) => {
                // Only spaces may surround it: "{{ x }}\n" is text with a newline.
                let t = s.trim_matches(' ');
                if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
                    && !inner.contains("{{")
                    && !inner.contains("}}")
                {
                    let val = self.eval(inner.trim(), ctx)?;
                    return serde_json::to_value(&val).map_err(|e| e.to_string());
                }
                Json::String(self.render_str(s, ctx)?)
            }
            Json::Array(a) => Json::Array(
                a.iter()
                    .map(|x| self.render_params(x, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(m) => Json::Object(
                m.iter()
                    .map(|(k, x)| Ok((k.clone(), self.render_params(x, ctx)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// A `when:` condition.
    pub fn truthy(&self, expr: &str, ctx: &Value) -> Result<bool, String> {
        Ok(self.eval(expr, ctx)?.is_true())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Templates {
        Templates { env: base_env() }
    }

    #[test]
    fn native_expression_keeps_type() {
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({"sysctl": {"a.b": 1}, "n": "x"}),
        ));
        let v = t()
            .render_params(
                &serde_json::json!({"values": "{{ sysctl }}", "s": "n={{ n }}"}),
                &ctx,
            )
            .unwrap();
        assert_eq!(v, serde_json::json!({"values": {"a.b": 1}, "s": "n=x"}));
    }

    #[test]
    fn undefined_is_an_error() {
        let ctx = Value::from(minijinja::value::Serde(serde_json::json!({})));
        let e = t().render_str("{{ nope }}", &ctx).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
    }

    #[test]
    fn when_with_registered_result() {
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({"f": {"changed": true}}),
        ));
        assert!(t().truthy("f.changed", &ctx).unwrap());
        assert!(!t().truthy("not f.changed", &ctx).unwrap());
    }

    #[test]
    fn syntax_error_has_line() {
        let e = check_syntax("a\n{{ x \n").unwrap_err();
        assert!(e.0.starts_with("template does not parse: "), "{}", e.0);
        assert_eq!(e.1, 2);
        let e = check_syntax("a\nb\nc {% if %}\n").unwrap_err();
        assert_eq!(e.1, 3);
    }
}

//! The functions mapping expressions may call: an allow-list of VRL's standard
//! library, plus weir's `lookup` (value maps declared in the project) and a
//! bounded `replace`, `split` and `join` — every one of them wrapped in
//! [`Bounded`], which fails the record when a call's value grows past
//! [`MAX_VALUE_BYTES`].
//!
//! Left out on purpose: anything with I/O, the environment, the clock or
//! randomness (`now`, `get_env_var`, `uuid_v4`, `http_request`...), closures
//! (`map_values`, `for_each`), and functions whose output can grow much faster
//! than their input (`range`, regex `replace`, `encode_*`, `parse_*` of
//! documents) — a hostile expression must not be able to build gigabytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use vrl::compiler::prelude::*;

/// The largest text a `replace` may produce, in bytes.
pub const MAX_REPLACE_OUTPUT: usize = 1 << 20;

/// The largest value any function call in a mapping may return, in bytes as
/// [`value_size`] counts them (1 MiB; the same bound as a mapping's final value).
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// What one element of an array or object costs beyond its contents: VRL holds
/// each as a `Value` (and an object's key as a string), so a million one-byte
/// strings take tens of megabytes, not one.
const ELEMENT_OVERHEAD: usize = std::mem::size_of::<Value>();

/// Standard-library functions allowed in mappings.
pub const ALLOWED: &[&str] = &[
    // text
    "downcase",
    "upcase",
    "strip_whitespace",
    "truncate",
    "slice",
    "contains",
    "starts_with",
    "ends_with",
    "strlen",
    "length",
    "camelcase",
    "pascalcase",
    "snakecase",
    "kebabcase",
    "screamingsnakecase",
    "format_number",
    "format_int",
    "match",
    // numbers
    "abs",
    "ceil",
    "floor",
    "round",
    "mod",
    // conversion and types
    "to_string",
    "to_int",
    "to_float",
    "to_bool",
    "to_unix_timestamp",
    "from_unix_timestamp",
    "parse_int",
    "parse_float",
    "parse_timestamp",
    "format_timestamp",
    "string",
    "int",
    "float",
    "bool",
    "timestamp",
    "is_null",
    "is_nullish",
    "is_empty",
    "is_string",
    "is_integer",
    "is_float",
    "is_boolean",
    "is_timestamp",
    "exists",
    "get",
    "includes",
    "compact",
    "unique",
];

/// The functions a mapping compiles with: the allow-list, `lookup` over the
/// project's tables, and the bounded `replace`.
pub fn for_mappings(
    lookups: &Arc<BTreeMap<String, BTreeMap<String, String>>>,
) -> Vec<Box<dyn Function>> {
    let mut fns: Vec<Box<dyn Function>> = vrl::stdlib::all()
        .into_iter()
        .filter(|f| ALLOWED.contains(&f.identifier()))
        .collect();
    fns.push(Box::new(Lookup {
        tables: lookups.clone(),
    }));
    fns.push(Box::new(BoundedReplace));
    fns.push(Box::new(BoundedSplit));
    fns.push(Box::new(BoundedJoin));
    // Every function, not a list of the ones known to amplify (`join`, `split`,
    // `format_number`, …): a list misses the next one. With every call's value
    // bounded, nesting cannot multiply: each step starts from at most
    // MAX_VALUE_BYTES, and operators (`+`) are few, as the screen bounds them.
    fns.into_iter()
        .map(|inner| Box::new(Bounded { inner }) as Box<dyn Function>)
        .collect()
}

/// The size of a value as the bound counts it: text and bytes by length,
/// arrays and objects by their contents plus [`ELEMENT_OVERHEAD`] per element
/// (and an object's keys). Stops counting once past `limit`.
pub fn value_size(value: &Value, limit: usize) -> usize {
    match value {
        Value::Bytes(b) => b.len(),
        Value::String(s) => s.len(),
        Value::Regex(r) => r.as_str().len(),
        Value::Array(items) => {
            let mut total = 0usize;
            for v in items {
                total = total.saturating_add(ELEMENT_OVERHEAD + value_size(v, limit));
                if total > limit {
                    break;
                }
            }
            total
        }
        Value::Object(map) => {
            let mut total = 0usize;
            for (k, v) in map {
                total = total.saturating_add(ELEMENT_OVERHEAD + k.len() + value_size(v, limit));
                if total > limit {
                    break;
                }
            }
            total
        }
        _ => ELEMENT_OVERHEAD,
    }
}

/// Checks a function's value against [`MAX_VALUE_BYTES`].
fn check_size(function: &str, value: &Value) -> Result<(), String> {
    let size = value_size(value, MAX_VALUE_BYTES);
    if size > MAX_VALUE_BYTES {
        return Err(format!(
            "`{function}` produced a value of more than {MAX_VALUE_BYTES} bytes; the limit for any value in a mapping is {MAX_VALUE_BYTES} bytes (1 MiB)"
        ));
    }
    Ok(())
}

/// A function whose every call is checked against [`MAX_VALUE_BYTES`]: the
/// compiled call is wrapped in a [`BoundedCall`]. Everything else (parameters,
/// type checking, fallibility) is the inner function's, so an expression that
/// compiled before compiles the same; a value over the bound is a runtime error,
/// which fails that record like any other error of the expression.
#[derive(Debug)]
struct Bounded {
    inner: Box<dyn Function>,
}

impl Function for Bounded {
    fn identifier(&self) -> &'static str {
        self.inner.identifier()
    }
    fn summary(&self) -> &'static str {
        self.inner.summary()
    }
    fn usage(&self) -> &'static str {
        self.inner.usage()
    }
    fn category(&self) -> &'static str {
        self.inner.category()
    }
    fn internal_failure_reasons(&self) -> &'static [&'static str] {
        self.inner.internal_failure_reasons()
    }
    fn return_kind(&self) -> u16 {
        self.inner.return_kind()
    }
    fn return_rules(&self) -> &'static [&'static str] {
        self.inner.return_rules()
    }
    fn notices(&self) -> &'static [&'static str] {
        self.inner.notices()
    }
    fn pure(&self) -> bool {
        self.inner.pure()
    }
    fn examples(&self) -> &'static [Example] {
        self.inner.examples()
    }
    fn compile(
        &self,
        state: &state::TypeState,
        ctx: &mut FunctionCompileContext,
        arguments: ArgumentList,
    ) -> Compiled {
        let call = self.inner.compile(state, ctx, arguments)?;
        Ok(Box::new(BoundedCall {
            function: self.inner.identifier(),
            call,
        }))
    }
    fn parameters(&self) -> &'static [Parameter] {
        self.inner.parameters()
    }
    fn closure(&self) -> Option<closure::Definition> {
        self.inner.closure()
    }
}

/// A compiled call whose value is checked before anything else sees it.
#[derive(Debug, Clone)]
struct BoundedCall {
    function: &'static str,
    call: Box<dyn Expression>,
}

impl Expression for BoundedCall {
    fn resolve(&self, ctx: &mut Context) -> Resolved {
        let value = self.call.resolve(ctx)?;
        check_size(self.function, &value)?;
        Ok(value)
    }

    fn resolve_constant(&self, state: &state::TypeState) -> Option<Value> {
        // A constant over the bound is left to `resolve`, which refuses it.
        self.call
            .resolve_constant(state)
            .filter(|v| check_size(self.function, v).is_ok())
    }

    fn type_info(&self, state: &state::TypeState) -> TypeInfo {
        self.call.type_info(state)
    }

    fn format(&self) -> Option<String> {
        self.call.format()
    }
}

/// The refusal of a call whose value would be over [`MAX_VALUE_BYTES`], worked
/// out before the value is built.
fn too_large(function: &str, size: usize) -> ExpressionError {
    format!(
        "`{function}` would produce a value of {size} bytes or more; the limit for any value in a mapping is {MAX_VALUE_BYTES} bytes (1 MiB)"
    )
    .into()
}

/// `split(value, pattern, limit)` as VRL's, but sized first: checking its value
/// afterwards (as [`Bounded`] does) would come too late, since splitting 1 MiB
/// into characters builds a million values — tens of MiB — before anything can
/// look at them.
#[derive(Clone, Copy, Debug)]
struct BoundedSplit;

impl Function for BoundedSplit {
    fn identifier(&self) -> &'static str {
        "split"
    }

    fn usage(&self) -> &'static str {
        "Splits the `value` string using `pattern` (text or regex), into at most `limit` parts."
    }

    fn category(&self) -> &'static str {
        Category::String.as_ref()
    }

    fn return_kind(&self) -> u16 {
        kind::ARRAY
    }

    fn parameters(&self) -> &'static [Parameter] {
        const PARAMETERS: &[Parameter] = &[
            Parameter::required("value", kind::BYTES, "The string to split."),
            Parameter::required(
                "pattern",
                kind::BYTES | kind::REGEX,
                "The string is split whenever this pattern is matched.",
            ),
            Parameter::optional(
                "limit",
                kind::INTEGER,
                "The maximum number of substrings to return.",
            ),
        ];
        PARAMETERS
    }

    fn examples(&self) -> &'static [Example] {
        &[]
    }

    fn compile(
        &self,
        _state: &state::TypeState,
        _ctx: &mut FunctionCompileContext,
        arguments: ArgumentList,
    ) -> Compiled {
        Ok(SplitFn {
            value: arguments.required("value"),
            pattern: arguments.required("pattern"),
            limit: arguments.optional("limit"),
        }
        .as_expr())
    }
}

#[derive(Debug, Clone)]
struct SplitFn {
    value: Box<dyn Expression>,
    pattern: Box<dyn Expression>,
    limit: Option<Box<dyn Expression>>,
}

impl FunctionExpression for SplitFn {
    fn resolve(&self, ctx: &mut Context) -> Resolved {
        let value = self.value.resolve(ctx)?;
        let limit = match &self.limit {
            Some(l) => usize::try_from(l.resolve(ctx)?.try_integer()?.max(0)).unwrap_or(0),
            None => usize::MAX,
        };
        let pattern = self.pattern.resolve(ctx)?;
        let string = value.try_bytes_utf8_lossy()?;
        // Parts before any is built: `str::split("")` yields an empty part at
        // each end and one per character.
        let parts = match &pattern {
            Value::Regex(regex) => regex.find_iter(&string).count() + 1,
            other => {
                let p = other
                    .to_str_lossy()
                    .ok_or("the pattern must be text or a regex")?;
                if p.is_empty() {
                    string.chars().count() + 2
                } else {
                    string.matches(p.as_ref()).count() + 1
                }
            }
        }
        .min(limit);
        let size = parts
            .saturating_mul(ELEMENT_OVERHEAD)
            .saturating_add(string.len());
        if size > MAX_VALUE_BYTES {
            return Err(too_large("split", size));
        }
        Ok(match &pattern {
            Value::Regex(regex) => regex
                .splitn(&string, limit)
                .map(Value::from)
                .collect::<Vec<_>>()
                .into(),
            other => {
                let p = other.to_str_lossy().expect("checked above");
                string
                    .splitn(limit, p.as_ref())
                    .map(Value::from)
                    .collect::<Vec<_>>()
                    .into()
            }
        })
    }

    fn type_def(&self, _: &state::TypeState) -> TypeDef {
        TypeDef::array(Collection::from_unknown(Kind::bytes())).infallible()
    }
}

/// `join(value, separator)` as VRL's, but sized first: two values within the
/// bound (30,000 short strings and a 1 MiB separator) would otherwise make a
/// 30 GB string before [`Bounded`] could look at it.
#[derive(Clone, Copy, Debug)]
struct BoundedJoin;

impl Function for BoundedJoin {
    fn identifier(&self) -> &'static str {
        "join"
    }

    fn usage(&self) -> &'static str {
        "Joins the strings of the `value` array, separated by `separator` (default none)."
    }

    fn category(&self) -> &'static str {
        Category::String.as_ref()
    }

    fn return_kind(&self) -> u16 {
        kind::BYTES
    }

    fn parameters(&self) -> &'static [Parameter] {
        const PARAMETERS: &[Parameter] = &[
            Parameter::required(
                "value",
                kind::ARRAY,
                "The array of strings to join together.",
            )
            .with_element_kind(kind::BYTES),
            Parameter::optional(
                "separator",
                kind::BYTES,
                "The string separating each original element when joined.",
            ),
        ];
        PARAMETERS
    }

    fn examples(&self) -> &'static [Example] {
        &[]
    }

    fn compile(
        &self,
        _state: &state::TypeState,
        _ctx: &mut FunctionCompileContext,
        arguments: ArgumentList,
    ) -> Compiled {
        Ok(JoinFn {
            value: arguments.required("value"),
            separator: arguments.optional("separator"),
        }
        .as_expr())
    }
}

#[derive(Debug, Clone)]
struct JoinFn {
    value: Box<dyn Expression>,
    separator: Option<Box<dyn Expression>>,
}

impl FunctionExpression for JoinFn {
    fn resolve(&self, ctx: &mut Context) -> Resolved {
        let array = self.value.resolve(ctx)?;
        let separator = match &self.separator {
            Some(s) => s.resolve(ctx)?.try_bytes_utf8_lossy()?.into_owned(),
            None => String::new(),
        };
        let array = array.try_array()?;
        let parts = array
            .iter()
            .map(|v| v.to_str_lossy().ok_or("all array items must be strings"))
            .collect::<Result<Vec<_>, _>>()?;
        let size = parts
            .iter()
            .fold(0usize, |n, p| n.saturating_add(p.len()))
            .saturating_add(
                parts
                    .len()
                    .saturating_sub(1)
                    .saturating_mul(separator.len()),
            );
        if size > MAX_VALUE_BYTES {
            return Err(too_large("join", size));
        }
        Ok(Value::from(parts.join(separator.as_str())))
    }

    fn type_def(&self, _: &state::TypeState) -> TypeDef {
        TypeDef::bytes()
    }
}

/// `lookup("table", key)`: the value `key` maps to in the project's lookup
/// table, or null.
#[derive(Clone, Debug)]
struct Lookup {
    tables: Arc<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Function for Lookup {
    fn identifier(&self) -> &'static str {
        "lookup"
    }

    fn usage(&self) -> &'static str {
        "Maps a value through a lookup table declared in the project ([project.lookups.NAME]); null when the key is absent."
    }

    fn category(&self) -> &'static str {
        Category::String.as_ref()
    }

    fn return_kind(&self) -> u16 {
        kind::BYTES | kind::NULL
    }

    fn parameters(&self) -> &'static [Parameter] {
        const PARAMETERS: &[Parameter] = &[
            Parameter::required("table", kind::BYTES, "The lookup table's name."),
            Parameter::required("key", kind::ANY, "The value to look up (as text)."),
        ];
        PARAMETERS
    }

    fn examples(&self) -> &'static [Example] {
        &[]
    }

    fn compile(
        &self,
        state: &state::TypeState,
        _ctx: &mut FunctionCompileContext,
        arguments: ArgumentList,
    ) -> Compiled {
        let table = arguments.required_literal("table", state)?;
        let name = table
            .to_str_lossy()
            .map(|s| s.into_owned())
            .unwrap_or_default();
        let Some(entries) = self.tables.get(&name) else {
            return Err(Box::new(vrl::compiler::function::Error::InvalidArgument {
                keyword: "table",
                value: table,
                error: "no lookup table of that name in [project.lookups]",
            }) as Box<dyn DiagnosticMessage>);
        };
        Ok(LookupFn {
            entries: Arc::new(entries.clone()),
            key: arguments.required("key"),
        }
        .as_expr())
    }
}

#[derive(Debug, Clone)]
struct LookupFn {
    entries: Arc<BTreeMap<String, String>>,
    key: Box<dyn Expression>,
}

impl FunctionExpression for LookupFn {
    fn resolve(&self, ctx: &mut Context) -> Resolved {
        let key = self.key.resolve(ctx)?;
        if key.is_null() {
            return Ok(Value::Null);
        }
        let text = match key.to_str_lossy() {
            Some(s) => s.into_owned(),
            None => key.to_string(),
        };
        Ok(self
            .entries
            .get(&text)
            .map_or(Value::Null, |v| Value::from(v.as_str())))
    }

    fn type_def(&self, _: &state::TypeState) -> TypeDef {
        TypeDef::bytes().or_null().infallible()
    }
}

/// `replace(value, pattern, with)`: replaces every occurrence of a plain-text
/// pattern, failing the record if the result would exceed
/// [`MAX_REPLACE_OUTPUT`] (an empty pattern matches between every character).
#[derive(Clone, Copy, Debug)]
struct BoundedReplace;

impl Function for BoundedReplace {
    fn identifier(&self) -> &'static str {
        "replace"
    }

    fn usage(&self) -> &'static str {
        "Replaces every occurrence of `pattern` (plain text) in `value` with `with`."
    }

    fn category(&self) -> &'static str {
        Category::String.as_ref()
    }

    fn return_kind(&self) -> u16 {
        kind::BYTES
    }

    fn parameters(&self) -> &'static [Parameter] {
        const PARAMETERS: &[Parameter] = &[
            Parameter::required("value", kind::BYTES, "The text."),
            Parameter::required("pattern", kind::BYTES, "The text to replace."),
            Parameter::required("with", kind::BYTES, "The replacement."),
        ];
        PARAMETERS
    }

    fn examples(&self) -> &'static [Example] {
        &[]
    }

    fn compile(
        &self,
        _state: &state::TypeState,
        _ctx: &mut FunctionCompileContext,
        arguments: ArgumentList,
    ) -> Compiled {
        Ok(ReplaceFn {
            value: arguments.required("value"),
            pattern: arguments.required("pattern"),
            with: arguments.required("with"),
        }
        .as_expr())
    }
}

#[derive(Debug, Clone)]
struct ReplaceFn {
    value: Box<dyn Expression>,
    pattern: Box<dyn Expression>,
    with: Box<dyn Expression>,
}

impl FunctionExpression for ReplaceFn {
    fn resolve(&self, ctx: &mut Context) -> Resolved {
        let value = self.value.resolve(ctx)?;
        let pattern = self.pattern.resolve(ctx)?;
        let with = self.with.resolve(ctx)?;
        let value = value.try_bytes_utf8_lossy()?;
        let pattern = pattern.try_bytes_utf8_lossy()?;
        let with = with.try_bytes_utf8_lossy()?;
        let matches = if pattern.is_empty() {
            value.chars().count() + 1
        } else {
            value.matches(pattern.as_ref()).count()
        };
        let size = value.len() + matches.saturating_mul(with.len());
        if size > MAX_REPLACE_OUTPUT {
            return Err(format!(
                "replace would produce {size} bytes; at most {MAX_REPLACE_OUTPUT} are allowed"
            )
            .into());
        }
        Ok(value.replace(pattern.as_ref(), &with).into())
    }

    fn type_def(&self, _: &state::TypeState) -> TypeDef {
        TypeDef::bytes().fallible()
    }
}

//! Field mappings: each destination field is a source field or a VRL expression
//! over the source record, compiled and type-checked once, applied per batch.
//!
//! A plain field mapping moves or clones a whole column (no per-record work). An
//! expression is screened (`screen`), compiled against the source entity's
//! schema with an allow-listed function set (`functions`), and evaluated per
//! record over a slot target (`target`); a failing expression fails that record,
//! naming the expression and its inputs. Compilation runs on a thread with a
//! large stack, and screening bounds what reaches the parser, so no expression
//! can crash the host.

pub mod functions;
pub mod screen;
mod target;
pub mod types;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use vrl::compiler::runtime::Runtime as VrlRuntime;
use vrl::compiler::state::ExternalEnv;
use vrl::compiler::{CompileConfig, Function, Program, TimeZone, TypeState, compile_with_state};
use vrl::parser::ast::{Container, Expr, Node, Opcode, Predicate, RootExpr};
use vrl::value::Kind;
use vrl::value::Value as VrlValue;
use vrl::value::kind::Collection;
use weir_types::{Batch, Column, ColumnBuilder, FieldSchema, FieldType};

use crate::project::{Mapping, MappingFrom};
use target::SlotTarget;

/// The most evaluation steps one expression may take on one record.
pub const MAX_STEPS_PER_RECORD: usize = 100_000;
/// The largest value one expression (and any function call in it) may produce
/// for one record.
pub use functions::MAX_VALUE_BYTES;
/// Stack for the VRL compiler's thread: a backstop behind screening.
const COMPILER_STACK: usize = 256 << 20;
/// VRL's diagnostics about types: E100 (unhandled fallible expression) and
/// E110 (fallible argument: a value of a type the function does not take).
const TYPE_DIAGNOSTICS: &[usize] = &[100, 110];
/// The code of a row whose types could not be checked because the source's
/// schema is unknown; validation reports it as a skipped check, not a problem.
pub const UNCHECKED: &str = "expression-unchecked";

/// [`CompiledMappings::compile_each`]'s answer: the rows that compiled, and a
/// problem for each row that did not.
pub struct CompiledEach {
    pub compiled: CompiledMappings,
    pub problems: Vec<MappingProblem>,
}

/// A problem with one mapping row, found before any run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingProblem {
    /// The index of the row in the task's mappings.
    pub row: usize,
    /// A stable code (see `validate`).
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

/// A mapping that cannot be applied to a batch at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "mapping `{destination}` ← `{source_field}`: the source has no field `{source_field}` (it has: {available})"
)]
pub struct MappingError {
    pub destination: String,
    pub source_field: String,
    pub available: String,
}

/// A record the mappings could not produce.
#[derive(Clone, Debug, PartialEq)]
pub struct MapFailure {
    pub record: usize,
    pub destination: String,
    pub message: String,
}

/// The mapped batch (one record per input record; failed ones hold nulls) and
/// the failures.
pub struct Mapped {
    pub batch: Batch,
    pub failures: Vec<MapFailure>,
}

enum Row {
    Field(String),
    Expr { text: String, program: Arc<Program> },
}

struct CompiledRow {
    destination: String,
    row: Row,
    /// The output type, when known (from the source schema or the expression).
    output: Option<FieldType>,
}

/// Mappings ready to apply to batches of one source entity.
pub struct CompiledMappings {
    rows: Vec<CompiledRow>,
    /// Top-level source fields read by expressions.
    slot_fields: Vec<String>,
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(cb));
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `candidates` to `name`, if reasonably close.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn unknown_field(name: &str, fields: &[FieldSchema]) -> (String, Option<String>) {
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let message = format!("the source has no field `{name}`");
    let hint = match nearest(name, names.iter().copied()) {
        Some(n) => format!("did you mean `{n}`?"),
        None => format!("source fields: {}", names.join(", ")),
    };
    (message, Some(hint))
}

/// The type state expressions compile against: the source record's fields with
/// their kinds, or any record when the schema is unknown.
fn type_state(source: Option<&[FieldSchema]>) -> TypeState {
    let record = match source {
        Some(fields) => {
            let map: BTreeMap<vrl::value::kind::Field, Kind> = fields
                .iter()
                .map(|f| {
                    (
                        f.name.as_str().into(),
                        types::kind_of(f.field_type, f.required),
                    )
                })
                .collect();
            Kind::object(Collection::from(map))
        }
        None => Kind::any_object(),
    };
    TypeState {
        local: Default::default(),
        external: ExternalEnv::new_with_kind(record, Kind::object(Collection::empty())),
    }
}

struct Compiler<'a> {
    fns: Vec<Box<dyn Function>>,
    state: TypeState,
    source: Option<&'a [FieldSchema]>,
}

impl Compiler<'_> {
    fn compile(&self, text: &str) -> Result<Program, vrl::diagnostic::DiagnosticList> {
        let mut config = CompileConfig::default();
        config.disable_unused_expression_check();
        compile_with_state(text, &self.fns, &self.state, config).map(|r| r.program)
    }

    /// The kind of a sub-expression, if it compiles on its own.
    fn kind_of(&self, text: &str) -> Option<Kind> {
        let p = self.compile(text).ok()?;
        Some(p.final_type_info().result.kind().clone())
    }

    /// Compiles one expression row; `Err` is the problem to report.
    fn expression(
        &self,
        row: usize,
        text: &str,
    ) -> Result<(Program, Option<FieldType>), MappingProblem> {
        let problem = |code, message: String, hint: Option<String>| MappingProblem {
            row,
            code,
            message,
            hint,
        };
        screen::text(text).map_err(|m| problem("expression-rejected", m, None))?;
        let ast = vrl::parser::parse(text).map_err(|e| {
            problem(
                "expression-invalid",
                format!("`{text}` does not parse: {e}"),
                None,
            )
        })?;
        screen::tree(&ast).map_err(|m| problem("expression-rejected", m, None))?;
        if let Some(fields) = self.source {
            let mut queried = Vec::new();
            for root in &ast.0 {
                if let RootExpr::Expr(e) = root.inner() {
                    collect_queries(e, &mut queried);
                }
            }
            for name in queried {
                if !fields.iter().any(|f| f.name == name) {
                    let (message, hint) = unknown_field(&name, fields);
                    return Err(problem(
                        "source-field-unknown",
                        format!("`{text}`: {message}"),
                        hint,
                    ));
                }
            }
        }
        self.check_operators(row, text, &ast)?;
        let program = match self.compile(text) {
            Ok(p) => p,
            Err(diagnostics) => {
                let mut parts = Vec::new();
                let mut hint = None;
                for d in diagnostics.errors() {
                    parts.push(format!("E{} {}", d.code, d.message));
                    for label in &d.labels {
                        parts.push(label.message.clone());
                    }
                    if hint.is_none() {
                        hint = d
                            .notes
                            .iter()
                            .map(|n| n.to_string())
                            .find(|n| n.starts_with("try") || n.starts_with("hint"));
                    }
                }
                // Without the source's schema every field is of any type, so a
                // type complaint says nothing about the expression: report it as
                // unchecked (validation lists it as skipped), not as invalid.
                if self.source.is_none()
                    && diagnostics
                        .errors()
                        .iter()
                        .all(|d| TYPE_DIAGNOSTICS.contains(&d.code))
                {
                    return Err(problem(UNCHECKED, format!("`{text}`"), None));
                }
                if let Some(fix) = self.nullable_fix(text, &ast, &diagnostics) {
                    hint = Some(fix);
                }
                if diagnostics.errors().iter().any(|d| d.code == 100) && hint.is_none() {
                    hint = Some(
                        "the expression can fail at run time: end the failing call with `!` to fail the record (`to_int!(.x)`), or give a default with `??`".to_owned(),
                    );
                }
                return Err(problem(
                    "expression-invalid",
                    format!("`{text}`: {}", parts.join("; ")),
                    hint,
                ));
            }
        };
        if let Some(fields) = self.source {
            for q in &program.info().target_queries {
                let Some(name) = top_field(q) else { continue };
                if !fields.iter().any(|f| f.name == name) {
                    let (message, hint) = unknown_field(&name, fields);
                    return Err(problem(
                        "source-field-unknown",
                        format!("`{text}`: {message}"),
                        hint,
                    ));
                }
            }
        }
        let kind = program.final_type_info().result.kind().clone();
        let (ty, _) = types::field_type_of(&kind);
        Ok((program, Some(ty)))
    }

    /// The one-line fix when a function refuses a source field only because it
    /// may be null (an empty CSV cell, a NULL column): `downcase(.email)` becomes
    /// `downcase(string!(.email))` (fails such records) or
    /// `downcase(string(.email) ?? "")` (maps them to "").
    fn nullable_fix(
        &self,
        text: &str,
        ast: &vrl::parser::ast::Program,
        diagnostics: &vrl::diagnostic::DiagnosticList,
    ) -> Option<String> {
        let fields = self.source?;
        if !diagnostics
            .errors()
            .iter()
            .any(|d| TYPE_DIAGNOSTICS.contains(&d.code))
        {
            return None;
        }
        let mut queried = Vec::new();
        for root in &ast.0 {
            if let RootExpr::Expr(e) = root.inner() {
                collect_queries(e, &mut queried);
            }
        }
        let field = queried.iter().find_map(|name| {
            fields
                .iter()
                .find(|f| &f.name == name && !f.required && f.field_type == FieldType::Text)
        })?;
        let query = format!(".{}", field.name);
        let strict = replace_query(text, &query, &format!("string!({query})"));
        let lenient = replace_query(text, &query, &format!("string({query}) ?? \"\""));
        Some(format!(
            "`{query}` may be null (an empty cell): write `{strict}` to fail the records where it is empty, or `{lenient}` to map them to \"\""
        ))
    }

    /// Catches operators whose operand types can never work (`.amount + " EUR"`
    /// on a number), and string repetition (`"x" * 1000000000`), which could
    /// build unbounded text.
    fn check_operators(
        &self,
        row: usize,
        text: &str,
        ast: &vrl::parser::ast::Program,
    ) -> Result<(), MappingProblem> {
        let mut ops = Vec::new();
        for root in &ast.0 {
            if let RootExpr::Expr(e) = root.inner() {
                collect_ops(e, &mut ops);
            }
        }
        for (code, left, right) in ops {
            let slice =
                |span: vrl::diagnostic::Span| text.get(span.start()..span.end()).unwrap_or("");
            let (l, r) = (slice(left), slice(right));
            let (lk, rk) = (self.kind_of(l), self.kind_of(r));
            if code == Opcode::Mul {
                let may_be_text = |k: &Option<Kind>| k.as_ref().is_none_or(|k| k.contains_bytes());
                if may_be_text(&lk) || may_be_text(&rk) {
                    return Err(MappingProblem {
                        row,
                        code: "expression-rejected",
                        message: format!(
                            "`{l} * {r}`: `*` on text repeats it and is not allowed in mappings"
                        ),
                        hint: Some("convert to a number first: `to_int!(…) * 2`".to_owned()),
                    });
                }
                continue;
            }
            let (Some(lk), Some(rk)) = (lk, rk) else {
                continue;
            };
            // Null operands fail the same operators, so the non-null type decides.
            let exact = |k: &Kind| {
                let (t, sure) = types::field_type_of(k);
                sure.then_some(t)
            };
            let (Some(lt), Some(rt)) = (exact(&lk), exact(&rk)) else {
                continue;
            };
            let numeric = |t| matches!(t, FieldType::Integer | FieldType::Float);
            let ok = match code {
                Opcode::Add => {
                    (lt == FieldType::Text && rt == FieldType::Text) || (numeric(lt) && numeric(rt))
                }
                Opcode::Sub | Opcode::Div => numeric(lt) && numeric(rt),
                _ => true,
            };
            if !ok {
                return Err(MappingProblem {
                    row,
                    code: "type-mismatch",
                    message: format!(
                        "`{l} {} {r}`: cannot apply `{}` to {lt} and {rt}",
                        code.as_str(),
                        code.as_str()
                    ),
                    hint: Some(if lt == FieldType::Text || rt == FieldType::Text {
                        format!(
                            "convert the number to text first: `to_string({}) {} …`",
                            if lt == FieldType::Text { r } else { l },
                            code.as_str()
                        )
                    } else {
                        "convert both sides to numbers".to_owned()
                    }),
                });
            }
        }
        Ok(())
    }
}

/// The top-level field a target query reads (`.a.b` → `a`).
fn top_field(path: &vrl::path::OwnedTargetPath) -> Option<String> {
    if path.prefix != vrl::path::PathPrefix::Event {
        return None;
    }
    match path.path.segments.first()? {
        vrl::path::OwnedSegment::Field(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Calls `f` on `node` and every expression below it.
fn visit(node: &Node<Expr>, f: &mut dyn FnMut(&Node<Expr>)) {
    f(node);
    match node.inner() {
        Expr::Op(op) => {
            let op = op.inner();
            visit(&op.0, f);
            visit(&op.2, f);
        }
        Expr::Container(c) => match c.inner() {
            Container::Group(g) => visit(&g.inner().0, f),
            Container::Block(b) => b.inner().0.iter().for_each(|e| visit(e, f)),
            _ => {}
        },
        Expr::IfStatement(i) => {
            let s = i.inner();
            match s.predicate.inner() {
                Predicate::One(e) => visit(e, f),
                Predicate::Many(es) => es.iter().for_each(|e| visit(e, f)),
            }
            s.if_node.inner().0.iter().for_each(|e| visit(e, f));
            if let Some(b) = &s.else_node {
                b.inner().0.iter().for_each(|e| visit(e, f));
            }
        }
        Expr::FunctionCall(call) => call
            .inner()
            .arguments
            .iter()
            .for_each(|a| visit(&a.inner().expr, f)),
        _ => {}
    }
}

/// The top-level source fields an expression reads (`.a.b` → `a`).
/// `text` with each `query` (`.email`, not `.email_2`) replaced by `with`.
fn replace_query(text: &str, query: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    let mut rest = text;
    while let Some(at) = rest.find(query) {
        let after = &rest[at + query.len()..];
        let continues = after
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if continues { query } else { with });
        rest = after;
    }
    out.push_str(rest);
    out
}

fn collect_queries(node: &Node<Expr>, out: &mut Vec<String>) {
    visit(node, &mut |n| {
        if let Expr::Query(q) = n.inner() {
            let q = q.inner().to_string();
            let name = q.strip_prefix('.').unwrap_or("");
            let name = name
                .split(['.', '['])
                .next()
                .unwrap_or("")
                .trim_matches('"');
            if !name.is_empty() && !out.iter().any(|o| o == name) {
                out.push(name.to_owned());
            }
        }
    });
}

/// The arithmetic operators of an expression, with their operands' spans.
fn collect_ops(
    node: &Node<Expr>,
    out: &mut Vec<(Opcode, vrl::diagnostic::Span, vrl::diagnostic::Span)>,
) {
    visit(node, &mut |n| {
        if let Expr::Op(op) = n.inner() {
            let op = op.inner();
            if matches!(
                op.1.inner(),
                Opcode::Add | Opcode::Sub | Opcode::Mul | Opcode::Div
            ) {
                out.push((*op.1.inner(), op.0.span(), op.2.span()));
            }
        }
    });
}

impl CompiledMappings {
    /// Compiles the rows against the source entity's fields (when known) and the
    /// project's lookup tables. `Err` lists every problem found.
    pub fn compile(
        rows: &[Mapping],
        source: Option<&[FieldSchema]>,
        lookups: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<CompiledMappings, Vec<MappingProblem>> {
        let each = Self::compile_each(rows, source, lookups);
        if each.problems.is_empty() {
            Ok(each.compiled)
        } else {
            Err(each.problems)
        }
    }

    /// Compiles every row it can and reports every row it cannot, so one bad
    /// row does not hide the type checks of the others (validation wants all).
    pub fn compile_each(
        rows: &[Mapping],
        source: Option<&[FieldSchema]>,
        lookups: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> CompiledEach {
        let lookups = Arc::new(lookups.clone());
        // The compiler recurses over the expression; screening bounds it, and a
        // big stack is the backstop.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("weir-vrl-compile".into())
                .stack_size(COMPILER_STACK)
                .spawn_scoped(scope, || Self::compile_here(rows, source, &lookups))
                .expect("spawn the compiler thread")
                .join()
                .unwrap_or_else(|_| CompiledEach {
                    compiled: CompiledMappings {
                        rows: Vec::new(),
                        slot_fields: Vec::new(),
                    },
                    problems: vec![MappingProblem {
                        row: 0,
                        code: "expression-rejected",
                        message: "the expression compiler failed on these mappings".to_owned(),
                        hint: None,
                    }],
                })
        })
    }

    fn compile_here(
        rows: &[Mapping],
        source: Option<&[FieldSchema]>,
        lookups: &Arc<BTreeMap<String, BTreeMap<String, String>>>,
    ) -> CompiledEach {
        let compiler = Compiler {
            fns: functions::for_mappings(lookups),
            state: type_state(source),
            source,
        };
        let mut problems = Vec::new();
        let mut compiled = Vec::new();
        let mut slot_fields: Vec<String> = Vec::new();
        for (i, m) in rows.iter().enumerate() {
            let row = match &m.from {
                MappingFrom::Field(f) => {
                    let ty = match source {
                        Some(fields) => match fields.iter().find(|s| &s.name == f) {
                            Some(s) => Some(s.field_type),
                            None => {
                                let (message, hint) = unknown_field(f, fields);
                                problems.push(MappingProblem {
                                    row: i,
                                    code: "source-field-unknown",
                                    message,
                                    hint,
                                });
                                continue;
                            }
                        },
                        None => None,
                    };
                    CompiledRow {
                        destination: m.destination.clone(),
                        row: Row::Field(f.clone()),
                        output: ty,
                    }
                }
                MappingFrom::Expr(text) => match compiler.expression(i, text) {
                    Ok((program, ty)) => {
                        for q in &program.info().target_queries {
                            if let Some(f) = top_field(q) {
                                if !slot_fields.contains(&f) {
                                    slot_fields.push(f);
                                }
                            }
                        }
                        CompiledRow {
                            destination: m.destination.clone(),
                            row: Row::Expr {
                                text: text.clone(),
                                program: Arc::new(program),
                            },
                            output: ty,
                        }
                    }
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                },
                MappingFrom::Nothing => {
                    problems.push(MappingProblem {
                        row: i,
                        code: "mapping-incomplete",
                        message: format!(
                            "mapping of `{}` has neither `source` nor `expr`",
                            m.destination
                        ),
                        hint: Some("add `source = \"field\"` or `expr = \"…\"`".to_owned()),
                    });
                    continue;
                }
                MappingFrom::Both { .. } => {
                    problems.push(MappingProblem {
                        row: i,
                        code: "mapping-incomplete",
                        message: format!(
                            "mapping of `{}` has both `source` and `expr`",
                            m.destination
                        ),
                        hint: Some(
                            "keep one: a plain field is also an expression (`.field`)".to_owned(),
                        ),
                    });
                    continue;
                }
            };
            compiled.push(row);
        }
        CompiledEach {
            compiled: CompiledMappings {
                rows: compiled,
                slot_fields,
            },
            problems,
        }
    }

    /// Plain field mappings only, with no schema (for code that has no source
    /// schema at hand and knows its rows are plain).
    pub fn plain(rows: &[Mapping]) -> Result<CompiledMappings, Vec<MappingProblem>> {
        Self::compile(rows, None, &BTreeMap::new())
    }

    /// `(destination field, output type when known)`, in mapping order.
    pub fn outputs(&self) -> impl Iterator<Item = (&str, Option<FieldType>)> {
        self.rows.iter().map(|r| (r.destination.as_str(), r.output))
    }

    /// Builds the destination batch: one column per mapping row, in mapping
    /// order, one record per input record.
    pub fn apply(&self, batch: Batch) -> Result<Mapped, MappingError> {
        let len = batch.len();
        let mut failures = Vec::new();
        let mut expr_columns: Vec<Option<Column>> = Vec::new();
        if self.rows.iter().any(|r| matches!(r.row, Row::Expr { .. })) {
            expr_columns = self.evaluate(&batch, &mut failures);
        }
        let mut batch = batch;
        let mut columns = Vec::with_capacity(self.rows.len());
        for (i, r) in self.rows.iter().enumerate() {
            let mut column = match &r.row {
                Row::Field(source) => {
                    let Some(idx) = batch.column_index(source) else {
                        return Err(MappingError {
                            destination: r.destination.clone(),
                            source_field: source.clone(),
                            available: batch
                                .fields()
                                .map(|(n, _)| n)
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    };
                    // Move the column unless a later row reads it too.
                    let used_later = self.rows[i + 1..]
                        .iter()
                        .any(|o| matches!(&o.row, Row::Field(s) if s == source));
                    if used_later {
                        batch.columns[idx].clone()
                    } else {
                        let placeholder = Column {
                            name: batch.columns[idx].name.clone(),
                            data: weir_types::ColumnData::Boolean(Vec::new()),
                            nulls: Vec::new(),
                        };
                        std::mem::replace(&mut batch.columns[idx], placeholder)
                    }
                }
                Row::Expr { .. } => expr_columns[i].take().expect("evaluated above"),
            };
            column.name = r.destination.clone();
            columns.push(column);
        }
        Ok(Mapped {
            batch: Batch { len, columns },
            failures,
        })
    }

    /// Evaluates the expression rows over every record; returns one column per
    /// row (`None` for plain rows).
    fn evaluate(&self, batch: &Batch, failures: &mut Vec<MapFailure>) -> Vec<Option<Column>> {
        let len = batch.len();
        let mut target = SlotTarget::new(&self.slot_fields);
        target.bind(batch, &self.slot_fields);
        let mut builders: Vec<Option<ColumnBuilder>> = self
            .rows
            .iter()
            .map(|r| match r.row {
                Row::Expr { .. } => {
                    Some(ColumnBuilder::new(r.output.unwrap_or(FieldType::Text), len))
                }
                Row::Field(_) => None,
            })
            .collect();
        let mut runtime = VrlRuntime::default();
        let tz = TimeZone::default();
        for i in 0..len {
            target.load(i);
            let mut failed = false;
            for (r, builder) in self.rows.iter().zip(builders.iter_mut()) {
                let (Row::Expr { text, program }, Some(builder)) = (&r.row, builder.as_mut())
                else {
                    continue;
                };
                if failed {
                    // One failure per record is enough; keep the columns aligned.
                    builder.push_null();
                    continue;
                }
                let mut steps = 0usize;
                let mut control = || {
                    steps += 1;
                    if steps > MAX_STEPS_PER_RECORD {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                };
                let outcome = runtime
                    .resolve_with_control(&mut target, program, &tz, &mut control)
                    .map_err(|e| match e {
                        vrl::compiler::runtime::Terminate::Interrupted => {
                            format!("stopped after {MAX_STEPS_PER_RECORD} steps")
                        }
                        other => other.to_string(),
                    })
                    .and_then(|v| push(builder, v));
                if let Err(message) = outcome {
                    builder.push_null();
                    failed = true;
                    failures.push(MapFailure {
                        record: i,
                        destination: r.destination.clone(),
                        message: format!(
                            "mapping `{}` = `{text}` failed: {message}; input: {}",
                            r.destination,
                            self.describe_inputs(&target)
                        ),
                    });
                }
            }
        }
        builders
            .into_iter()
            .map(|b| b.map(|b| b.finish("")))
            .collect()
    }

    fn describe_inputs(&self, target: &SlotTarget) -> String {
        self.slot_fields
            .iter()
            .zip(target.values())
            .map(|(f, v)| {
                let mut s = v.to_string();
                if s.len() > 80 {
                    let mut cut = 80;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s.truncate(cut);
                    s.push('…');
                }
                format!("{f}={s}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Appends an expression's value to its column; `Err` says why it does not fit.
fn push(builder: &mut ColumnBuilder, value: VrlValue) -> Result<(), String> {
    match (builder.field_type(), value) {
        (_, VrlValue::Null) => builder.push_null(),
        (FieldType::Text | FieldType::Decimal, v) if v.is_bytes() => {
            let b = v.as_bytes().expect("is_bytes");
            if b.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "the value is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
                    b.len()
                ));
            }
            if std::str::from_utf8(b).is_err() {
                return Err("the value is not UTF-8 text".to_owned());
            }
            builder.push_bytes(b);
        }
        (FieldType::Text, VrlValue::Timestamp(t)) => builder.push_bytes(
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .as_bytes(),
        ),
        (FieldType::Text, other) => {
            let s = other.to_string();
            if s.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "the value is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
                    s.len()
                ));
            }
            builder.push_bytes(s.as_bytes());
        }
        (FieldType::Integer, VrlValue::Integer(i)) => builder
            .push(&weir_types::Value::Integer(i))
            .map_err(|e| e.to_string())?,
        (FieldType::Float, VrlValue::Float(f)) => builder
            .push(&weir_types::Value::Float(f.into_inner()))
            .map_err(|e| e.to_string())?,
        (FieldType::Float, VrlValue::Integer(i)) => builder
            .push(&weir_types::Value::Float(i as f64))
            .map_err(|e| e.to_string())?,
        (FieldType::Boolean, VrlValue::Boolean(b)) => builder
            .push(&weir_types::Value::Boolean(b))
            .map_err(|e| e.to_string())?,
        (FieldType::Timestamp, VrlValue::Timestamp(t)) => builder
            .push(&weir_types::Value::Timestamp(t.timestamp_micros()))
            .map_err(|e| e.to_string())?,
        (ty, other) => return Err(format!("expected {ty}, got {}", other.kind_str())),
    }
    Ok(())
}

#[cfg(test)]
mod tests;

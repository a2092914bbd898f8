//! Screening of expression text before the VRL parser sees it, and of the parsed
//! tree before the compiler does.
//!
//! Why: VRL's parser recurses once per nesting level and operator, and a few
//! hundred of them overflow the stack and kill the process (upstream vrl#243);
//! and a mapping that may assign variables can double a string per statement.
//! So the text is bounded (length, bracket depth, operator count) by a scan that
//! cannot recurse, and the tree is refused if it assigns, aborts, returns or uses
//! a closure: a mapping is one expression over the source record.

use vrl::parser::ast::{Container, Expr, Node, Predicate, RootExpr, Unary};

/// The longest expression accepted, in bytes.
pub const MAX_EXPR_BYTES: usize = 4_096;
/// The deepest nesting of brackets accepted.
pub const MAX_DEPTH: usize = 32;
/// The most operators accepted in one expression.
pub const MAX_OPERATORS: usize = 128;

/// Checks the raw text. `Err` says which bound was exceeded.
pub fn text(expr: &str) -> Result<(), String> {
    if expr.trim().is_empty() {
        return Err("the expression is empty".to_owned());
    }
    if expr.len() > MAX_EXPR_BYTES {
        return Err(format!(
            "the expression is {} bytes long; at most {MAX_EXPR_BYTES} are accepted",
            expr.len()
        ));
    }
    let bytes = expr.as_bytes();
    let (mut depth, mut max_depth, mut operators) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            // Skip string literals (with escapes) so their contents do not count.
            b'"' | b'\'' => {
                let quote = c;
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'|' | b'&' | b'<' | b'>' | b'!' | b'=' | b'?' => {
                operators += 1
            }
            _ => {}
        }
        i += 1;
    }
    if max_depth > MAX_DEPTH {
        return Err(format!(
            "the expression nests {max_depth} levels of brackets; at most {MAX_DEPTH} are accepted"
        ));
    }
    if operators > MAX_OPERATORS {
        return Err(format!(
            "the expression has {operators} operators; at most {MAX_OPERATORS} are accepted"
        ));
    }
    Ok(())
}

/// Checks the parsed tree: no assignment, abort, return, break or closure.
pub fn tree(program: &vrl::parser::ast::Program) -> Result<(), String> {
    for root in &program.0 {
        match root.inner() {
            RootExpr::Expr(e) => expr(e)?,
            RootExpr::Error(e) => return Err(e.to_string()),
        }
    }
    if program.0.len() > 1 {
        return Err(
            "a mapping is one expression; combine statements with operators or `if`".to_owned(),
        );
    }
    Ok(())
}

fn expr(node: &Node<Expr>) -> Result<(), String> {
    match node.inner() {
        Expr::Literal(_) | Expr::Query(_) | Expr::Variable(_) => Ok(()),
        Expr::Container(c) => match c.inner() {
            Container::Group(g) => expr(&g.inner().0),
            Container::Block(b) => b.inner().0.iter().try_for_each(expr),
            // The parser does not expose literal elements; refuse any `=` that is not
            // a comparison inside them (a rare false positive beats an assignment).
            Container::Array(_) | Container::Object(_) => {
                if has_assignment(&c.inner().to_string()) {
                    Err("mappings cannot assign inside array or object literals".to_owned())
                } else {
                    Ok(())
                }
            }
        },
        Expr::IfStatement(i) => {
            let s = i.inner();
            match s.predicate.inner() {
                Predicate::One(e) => expr(e)?,
                Predicate::Many(es) => es.iter().try_for_each(expr)?,
            }
            s.if_node.inner().0.iter().try_for_each(expr)?;
            if let Some(e) = &s.else_node {
                e.inner().0.iter().try_for_each(expr)?;
            }
            Ok(())
        }
        Expr::Op(op) => {
            let op = op.inner();
            expr(&op.0)?;
            expr(&op.2)
        }
        Expr::FunctionCall(call) => {
            let call = call.inner();
            if call.closure.is_some() {
                return Err(format!(
                    "`{}` takes a closure; closures are not allowed in mappings",
                    call.ident.inner()
                ));
            }
            call.arguments
                .iter()
                .try_for_each(|a| expr(&a.inner().expr))
        }
        Expr::Unary(u) => match u.inner() {
            Unary::Not(n) => {
                let (_, inner) = n.inner().clone().take();
                expr(&inner)
            }
        },
        Expr::Assignment(_) => Err(
            "mappings cannot assign (`x = …`, `.field = …`); a mapping is one expression whose value is the destination field"
                .to_owned(),
        ),
        Expr::Abort(_) => Err("`abort` is not allowed in mappings; use `!` to fail a record".to_owned()),
        Expr::Return(_) | Expr::Break(_) => {
            Err("`return` and `break` are not allowed in mappings".to_owned())
        }
    }
}

fn has_assignment(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'='
            && !matches!(b.get(i.wrapping_sub(1)), Some(b'=' | b'!' | b'<' | b'>'))
            && b.get(i + 1) != Some(&b'=')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_before_parsing() {
        assert!(text(".a + .b").is_ok());
        let deep = format!("{}1{}", "(".repeat(1_000), ")".repeat(1_000));
        assert!(text(&deep).unwrap_err().contains("nests 1000 levels"));
        let huge = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(text(&huge).is_err());
        let long = "1+".repeat(3_000) + "1";
        assert!(text(&long).unwrap_err().contains("bytes long"));
        let many = "1+".repeat(200) + "1";
        assert!(text(&many).unwrap_err().contains("200 operators"));
        // Brackets and operators inside strings do not count.
        assert!(text(&format!("\"{}\"", "((((+".repeat(50))).is_ok());
        assert!(text("  ").is_err());
    }

    #[test]
    fn statements_that_could_grow_without_bound_are_refused() {
        let parse = |s: &str| vrl::parser::parse(s).unwrap();
        assert!(
            tree(&parse("s = .a\ns + s"))
                .unwrap_err()
                .contains("cannot assign")
        );
        assert!(
            tree(&parse(".x = 1"))
                .unwrap_err()
                .contains("cannot assign")
        );
        assert!(
            tree(&parse("map_values(.o) -> |v| { v }"))
                .unwrap_err()
                .contains("closure")
        );
        assert!(tree(&parse("if .a == 1 { \"x\" } else { upcase(.b) }")).is_ok());
    }
}

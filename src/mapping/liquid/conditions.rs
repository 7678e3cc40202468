//! Conditions: LiquidJS's `and`/`or` grouping and comparisons in the `liquid` crate's syntax,
//! and conditions with `<>`, evaluated the way LiquidJS evaluates any expression.
//!
//! `<>` is no LiquidJS operator: it reads `<` and then `>`, and LiquidJS's expression
//! evaluator (operators to postfix by precedence, then a stack where a missing operand is
//! `undefined`) gives such a condition a meaning of its own: `a or b <> c` is
//! `undefined or (a < (b > c))`, `a and b <> c` is `undefined and ...` (false) and `not a <> b`
//! is `not (undefined < (a > b))` (true). These conditions are built here as that tree and
//! written for the `liquid` crate with each operator's result computed into a variable of its
//! own before the tag (conditions have no side effects, so evaluating them early changes
//! nothing), and a comparison with a boolean read as JavaScript reads it (`x < true` is
//! `Number(x) < 1`, `x == true` is strict).

use super::*;

/// One comparison or operand of a condition, negated when preceded by an odd number of `not`.
pub(super) struct Atom<'a> {
    pub(super) negated: bool,
    pub(super) left: &'a Operand,
    pub(super) comparison: Option<(Op, &'a Operand)>,
}

impl Translator {
    /// Emits a LiquidJS condition for the `liquid` crate. LiquidJS groups `and` and `or` from the
    /// right (`a and b or c` is `a and (b or c)`) while the `liquid` crate binds `and` tighter; the
    /// condition is rewritten as the equivalent disjunction of conjunctions.
    pub(super) fn emit_condition(&mut self, expr: &[ExprToken]) -> Result<String, LiquidError> {
        let expr = self.hoist_all(expr)?;
        let expr = expr.as_slice();
        if has_diamond(expr) {
            return self.emit_diamond_condition(expr);
        }
        let mut atoms = Vec::new();
        let mut joins = Vec::new();
        let mut i = 0;
        loop {
            let mut negated = false;
            while let Some(ExprToken::Op(Op::Not)) = expr.get(i) {
                negated = !negated;
                i += 1;
            }
            let Some(ExprToken::Value(left)) = expr.get(i) else {
                return Err(unsupported("this condition syntax"));
            };
            i += 1;
            let mut comparison = None;
            if let Some(ExprToken::Op(op)) = expr.get(i)
                && op.is_comparison()
            {
                let Some(ExprToken::Value(right)) = expr.get(i + 1) else {
                    return Err(unsupported("this condition syntax"));
                };
                comparison = Some((*op, right));
                i += 2;
            }
            atoms.push(Atom {
                negated,
                left,
                comparison,
            });
            match expr.get(i) {
                None => break,
                Some(ExprToken::Op(op @ (Op::And | Op::Or))) => {
                    joins.push(*op);
                    i += 1;
                }
                Some(_) => return Err(unsupported("this condition syntax")),
            }
        }
        let mut emitted = Vec::with_capacity(atoms.len());
        for atom in &atoms {
            emitted.push(self.emit_atom(atom)?);
        }
        let Some(last) = emitted.pop() else {
            return Err(unsupported("this condition syntax"));
        };
        let mut disjuncts: Vec<Vec<String>> = vec![vec![last]];
        for (atom, join) in emitted.into_iter().zip(joins).rev() {
            match join {
                Op::And => {
                    for conjunct in &mut disjuncts {
                        conjunct.insert(0, atom.clone());
                    }
                }
                _ => disjuncts.insert(0, vec![atom]),
            }
        }
        if disjuncts.iter().map(Vec::len).sum::<usize>() > 256 {
            return Err(unsupported("a condition this long"));
        }
        Ok(disjuncts
            .iter()
            .map(|conjunct| conjunct.join(" and "))
            .collect::<Vec<_>>()
            .join(" or "))
    }

    pub(super) fn emit_atom(&mut self, atom: &Atom<'_>) -> Result<String, LiquidError> {
        let Some((op, right)) = atom.comparison else {
            let left = emit_operand(atom.left)?;
            // In the `liquid` crate `x == false` holds exactly when `x` is nil or false.
            return Ok(if atom.negated {
                format!("{left} == false")
            } else {
                left
            });
        };
        let op = match (op, atom.negated) {
            (op, false) => op,
            (Op::Eq, true) => Op::Ne,
            (Op::Ne, true) => Op::Eq,
            _ => return Err(unsupported("\"not\" before this comparison")),
        };
        let left = match (op, atom.left) {
            (Op::Contains, Operand::Path(props)) => self.coerced_alias(props, Coercion::Container),
            _ => None,
        };
        let left = match left {
            Some(alias) => alias,
            None => self.comparison_operand(atom.left, op, right)?,
        };
        let right = self.comparison_operand(right, op, atom.left)?;
        if op == Op::Contains {
            // `nil contains x` is an error in the `liquid` crate and false in LiquidJS.
            return Ok(format!("{left} != nil and {left} contains {right}"));
        }
        Ok(format!("{left} {} {right}", op.text()))
    }

    /// One side of a comparison. A payload path compared with a literal is coerced the way the
    /// JavaScript comparison reads it where the `liquid` crate would read it differently:
    /// `==` with a boolean is strict in LiquidJS (the `liquid` crate compares truthiness) and
    /// `<`, `>`, `<=`, `>=` with a number convert the other side to a number.
    pub(super) fn comparison_operand(
        &mut self,
        operand: &Operand,
        op: Op,
        other: &Operand,
    ) -> Result<String, LiquidError> {
        let coercion = match (op, other) {
            (Op::Eq | Op::Ne, Operand::Literal(Literal::True)) => Some(Coercion::IsTrue),
            (Op::Eq | Op::Ne, Operand::Literal(Literal::False)) => Some(Coercion::IsFalse),
            (Op::Gt | Op::Lt | Op::Ge | Op::Le, Operand::Num(_)) => Some(Coercion::Relational),
            _ => None,
        };
        if let (Some(coercion), Operand::Path(props)) = (coercion, operand)
            && let Some(alias) = self.coerced_alias(props, coercion)
        {
            return Ok(alias);
        }
        emit_operand(operand)
    }
}

/// An expression as LiquidJS's evaluator builds it.
enum Expr<'a> {
    /// An operand the stack did not have.
    Undefined,
    Value(&'a Operand),
    Cmp(Op, Box<Expr<'a>>, Box<Expr<'a>>),
    Not(Box<Expr<'a>>),
    And(Box<Expr<'a>>, Box<Expr<'a>>),
    Or(Box<Expr<'a>>, Box<Expr<'a>>),
}

/// Prefix of the variables conditions are computed into (`emit_root` never writes it).
const BOOLEAN_PREFIX: &str = "__lqb_";
/// Most operator results one template may compute ahead.
const MAX_BOOLEANS: usize = 256;

static NIL: Operand = Operand::Literal(Literal::Nil);
static TRUE: Operand = Operand::Literal(Literal::True);
static FALSE: Operand = Operand::Literal(Literal::False);
static ZERO: Operand = Operand::Num(0.0);
static ONE: Operand = Operand::Num(1.0);

/// Whether the condition has `<` right before `>`.
pub(super) fn has_diamond(expr: &[ExprToken]) -> bool {
    expr.windows(2)
        .any(|pair| matches!(pair, [ExprToken::Op(Op::Lt), ExprToken::Op(Op::Gt)]))
}

fn precedence(op: Op) -> u8 {
    match op {
        Op::And | Op::Or => 0,
        Op::Not => 1,
        _ => 2,
    }
}

/// LiquidJS's `toPostfix` and `Expression.evaluate`, on symbols.
fn build(expr: &[ExprToken]) -> Expr<'_> {
    enum Item<'a> {
        Op(Op),
        Value(&'a Operand),
    }
    let mut postfix = Vec::with_capacity(expr.len());
    let mut ops: Vec<Op> = Vec::new();
    for token in expr {
        match token {
            ExprToken::Op(op) => {
                while let Some(top) = ops.last().copied()
                    && precedence(top) > precedence(*op)
                {
                    ops.pop();
                    postfix.push(Item::Op(top));
                }
                ops.push(*op);
            }
            ExprToken::Value(operand) => postfix.push(Item::Value(operand)),
        }
    }
    while let Some(op) = ops.pop() {
        postfix.push(Item::Op(op));
    }
    let mut stack = Vec::new();
    for item in postfix {
        let node = match item {
            Item::Value(operand) => Expr::Value(operand),
            Item::Op(op) => {
                let right = Box::new(stack.pop().unwrap_or(Expr::Undefined));
                if op == Op::Not {
                    Expr::Not(right)
                } else {
                    let left = Box::new(stack.pop().unwrap_or(Expr::Undefined));
                    match op {
                        Op::And => Expr::And(left, right),
                        Op::Or => Expr::Or(left, right),
                        _ => Expr::Cmp(op, left, right),
                    }
                }
            }
        };
        stack.push(node);
    }
    // LiquidJS returns the first operand left on the stack.
    stack.into_iter().next().unwrap_or(Expr::Undefined)
}

/// One side of a comparison: a value, or a boolean computed into a variable.
enum Term<'a> {
    Value(&'a Operand),
    Bool(String),
}

/// JavaScript's comparison of two booleans (as the numbers 0 and 1).
fn compare_booleans(op: Op, left: bool, right: bool) -> bool {
    let (l, r) = (u8::from(left), u8::from(right));
    match op {
        Op::Eq => l == r,
        Op::Ne => l != r,
        Op::Lt => l < r,
        Op::Gt => l > r,
        Op::Le => l <= r,
        Op::Ge => l >= r,
        _ => false,
    }
}

/// `v op b` (or `b op v`) when `v` is a literal, as JavaScript computes it: a boolean compared
/// with a number or a string is the number 0 or 1, `==` is strict, and the `nil`, `empty` and
/// `blank` drops are less or greater than nothing and equal to no boolean.
fn fold_literal(v: &Operand, op: Op, b: bool, v_on_left: bool) -> Option<bool> {
    let number = match v {
        Operand::Num(n) => *n,
        Operand::Str(s) => js_string_to_number(s),
        Operand::Literal(Literal::True) => 1.0,
        Operand::Literal(Literal::False) => 0.0,
        Operand::Literal(_) => {
            return Some(op == Op::Ne);
        }
        _ => return None,
    };
    let strict_equal =
        matches!(v, Operand::Literal(Literal::True | Literal::False)) && (number == 1.0) == b;
    let (l, r) = if v_on_left {
        (number, f64::from(u8::from(b)))
    } else {
        (f64::from(u8::from(b)), number)
    };
    Some(match op {
        Op::Eq => strict_equal,
        Op::Ne => !strict_equal,
        Op::Lt => l < r,
        Op::Gt => l > r,
        Op::Le => l <= r,
        Op::Ge => l >= r,
        _ => false,
    })
}

impl Translator {
    /// A condition with `<>`, for the `liquid` crate.
    pub(super) fn emit_diamond_condition(
        &mut self,
        expr: &[ExprToken],
    ) -> Result<String, LiquidError> {
        let tree = build(expr);
        self.truth(&tree)
    }

    /// A `liquid` condition that holds exactly when LiquidJS finds `e` truthy.
    fn truth(&mut self, e: &Expr<'_>) -> Result<String, LiquidError> {
        match e {
            Expr::Undefined => Ok("false".to_owned()),
            Expr::Value(operand) => self.emit_atom(&Atom {
                negated: false,
                left: operand,
                comparison: None,
            }),
            Expr::Not(inner) => {
                let inner = self.boolean_of(inner)?;
                Ok(format!("{inner} == false"))
            }
            Expr::And(left, right) => {
                let left = self.truth(left)?;
                let right = self.truth(right)?;
                self.any_of(&[vec![left, right]])
            }
            Expr::Or(left, right) => {
                let left = self.truth(left)?;
                let right = self.truth(right)?;
                self.any_of(&[vec![left], vec![right]])
            }
            Expr::Cmp(op, left, right) => self.compare(*op, left, right),
        }
    }

    /// `e`'s truthiness computed into a variable.
    fn boolean_of(&mut self, e: &Expr<'_>) -> Result<String, LiquidError> {
        let condition = self.truth(e)?;
        self.any_of(&[vec![condition]])
    }

    fn term<'a>(&mut self, e: &'a Expr<'a>) -> Result<Option<Term<'a>>, LiquidError> {
        Ok(match e {
            Expr::Undefined => None,
            Expr::Value(operand) => Some(Term::Value(operand)),
            _ => Some(Term::Bool(self.boolean_of(e)?)),
        })
    }

    fn compare(
        &mut self,
        op: Op,
        left: &Expr<'_>,
        right: &Expr<'_>,
    ) -> Result<String, LiquidError> {
        let relational = matches!(op, Op::Lt | Op::Gt | Op::Le | Op::Ge);
        let left = self.term(left)?;
        let right = self.term(right)?;
        let (left, right) = match (left, right) {
            // `undefined` is NaN to `<` and `>`, contains nothing and is in nothing here.
            (None, _) | (_, None) if relational || op == Op::Contains => {
                return Ok("false".to_owned());
            }
            (left, right) => (
                left.unwrap_or(Term::Value(&NIL)),
                right.unwrap_or(Term::Value(&NIL)),
            ),
        };
        // As a number for `<` and `>`, as itself for `==` and `!=` (strict).
        let constant = |b: bool| match (relational, b) {
            (true, true) => &ONE,
            (true, false) => &ZERO,
            (false, true) => &TRUE,
            (false, false) => &FALSE,
        };
        let is = |var: &str, b: bool| {
            if b {
                var.to_owned()
            } else {
                format!("{var} == false")
            }
        };
        match (&left, &right) {
            (Term::Value(l), Term::Value(r)) => self.emit_atom(&Atom {
                negated: false,
                left: l,
                comparison: Some((op, r)),
            }),
            (Term::Bool(_), _) if op == Op::Contains => Ok("false".to_owned()),
            (Term::Value(_), Term::Bool(_)) if op == Op::Contains => {
                Err(unsupported("`contains` with a comparison's result"))
            }
            (Term::Value(v), Term::Bool(b)) => {
                let mut cases = Vec::new();
                for value in [true, false] {
                    let atom = match fold_literal(v, op, value, true) {
                        Some(true) => "true".to_owned(),
                        Some(false) => continue,
                        None => self.emit_atom(&Atom {
                            negated: false,
                            left: v,
                            comparison: Some((op, constant(value))),
                        })?,
                    };
                    cases.push(vec![is(b, value), atom]);
                }
                self.any_of(&cases)
            }
            (Term::Bool(b), Term::Value(v)) => {
                let mut cases = Vec::new();
                for value in [true, false] {
                    let atom = match fold_literal(v, op, value, false) {
                        Some(true) => "true".to_owned(),
                        Some(false) => continue,
                        None => self.emit_atom(&Atom {
                            negated: false,
                            left: constant(value),
                            comparison: Some((op, v)),
                        })?,
                    };
                    cases.push(vec![is(b, value), atom]);
                }
                self.any_of(&cases)
            }
            (Term::Bool(l), Term::Bool(r)) => {
                let mut cases = Vec::new();
                for lv in [true, false] {
                    for rv in [true, false] {
                        if compare_booleans(op, lv, rv) {
                            cases.push(vec![is(l, lv), is(r, rv)]);
                        }
                    }
                }
                self.any_of(&cases)
            }
        }
    }

    /// A variable computed before the tag: true when every condition of one of `cases` holds.
    fn any_of(&mut self, cases: &[Vec<String>]) -> Result<String, LiquidError> {
        if self.booleans >= MAX_BOOLEANS {
            return Err(unsupported("a condition this long"));
        }
        let name = format!("{BOOLEAN_PREFIX}{}", self.booleans);
        self.booleans += 1;
        let _ = write!(self.out, "{{% assign {name} = false %}}");
        for case in cases {
            for condition in case {
                let _ = write!(self.out, "{{% if {condition} %}}");
            }
            let _ = write!(self.out, "{{% assign {name} = true %}}");
            for _ in case {
                self.out.push_str("{% endif %}");
            }
        }
        Ok(name)
    }
}

//! Authorization rule sets, with agentgateway's semantics.
//!
//! A rule is `allow` (a bare expression), `deny` or `require`. With no rules a request is
//! allowed. Otherwise: a `deny` rule that is true denies; a `require` rule that is not true
//! denies; an `allow` rule that is true allows; and when none of these decided, the request is
//! denied if there are `allow` rules and allowed if there are only `deny`/`require` rules.
//!
//! An evaluation error counts as false for `allow` (fails closed) and as a failure for
//! `require` (fails closed), but as "not matched" for `deny`: a `deny` rule whose expression
//! errors — a missing header, a claim of the wrong type — lets the request through. Write
//! denials as `require` rules (or guard them with `has()`) when that matters.

use cel::Context;

use super::program::{CompileError, EvalError, Program, References};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Allow,
    Deny,
    Require,
}

#[derive(Debug)]
pub struct Rule {
    pub kind: RuleKind,
    pub program: Program,
}

/// The outcome of a rule set: allowed or not, and the index of the rule that decided (None when
/// no rule did: no rules at all, no `allow` rule matched, or nothing denied a set without
/// `allow` rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Option<usize>,
}

#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    // Indices by kind, in rule order: denials are tried first, then requirements, then allows.
    deny: Vec<usize>,
    require: Vec<usize>,
    allow: Vec<usize>,
    references: References,
}

/// A rule that cannot be compiled: its index and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub index: usize,
    pub error: CompileError,
}

impl RuleSet {
    pub fn compile<'s>(
        rules: impl IntoIterator<Item = (RuleKind, &'s str)>,
    ) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::default();
        for (index, (kind, source)) in rules.into_iter().enumerate() {
            let program = Program::compile(source).map_err(|error| RuleError { index, error })?;
            set.references = set.references.union(program.references());
            match kind {
                RuleKind::Deny => set.deny.push(index),
                RuleKind::Require => set.require.push(index),
                RuleKind::Allow => set.allow.push(index),
            }
            set.rules.push(Rule { kind, program });
        }
        Ok(set)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What the rules read, together.
    pub fn references(&self) -> &References {
        &self.references
    }

    pub fn evaluate(&self, context: &Context<'_, '_>) -> Decision {
        let holds = |index: usize| self.rules[index].program.evaluate_bool(context) == Ok(true);
        if let Some(&rule) = self.deny.iter().find(|&&i| holds(i)) {
            return Decision {
                allowed: false,
                rule: Some(rule),
            };
        }
        if let Some(&rule) = self.require.iter().find(|&&i| !holds(i)) {
            return Decision {
                allowed: false,
                rule: Some(rule),
            };
        }
        if let Some(&rule) = self.allow.iter().find(|&&i| holds(i)) {
            return Decision {
                allowed: true,
                rule: Some(rule),
            };
        }
        Decision {
            allowed: self.allow.is_empty(),
            rule: None,
        }
    }

    /// Every rule's own result, errors included, in rule order (for logs and tests).
    pub fn explain(&self, context: &Context<'_, '_>) -> Vec<Result<bool, EvalError>> {
        self.rules
            .iter()
            .map(|rule| rule.program.evaluate_bool(context))
            .collect()
    }
}

//! Filters and pages for list queries built at run time: `WHERE` clauses
//! with `$N` placeholders (which SQLite and PostgreSQL both accept), and a
//! page of one more row than asked, to know whether another follows.

use sqlx::any::AnyArguments;
use sqlx::query::QueryAs;
use sqlx::{Any, AssertSqlSafe};
use warden_core::Page;

/// A bind value.
enum Arg {
    Text(String),
    Int(i64),
}

/// Collects `WHERE` clauses and their arguments.
#[derive(Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    fn push(&mut self, clause: &str, arg: Arg) {
        self.args.push(arg);
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.args.len())));
    }

    /// `clause` (with `$?` for the value) when `v` is set.
    pub(crate) fn text(&mut self, clause: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.push(clause, Arg::Text(v.to_owned()));
        }
    }

    /// `clause` (with `$?` for the value) when `v` is set.
    pub(crate) fn int(&mut self, clause: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.push(clause, Arg::Int(v));
        }
    }

    /// `clause` matching `s` anywhere, case-insensitively (ASCII, as
    /// SQLite's `LOWER`), with `LIKE`'s wildcards taken literally.
    pub(crate) fn contains(&mut self, clause: &str, s: Option<&str>) {
        if let Some(s) = s {
            let mut p = String::from("%");
            for c in s.to_ascii_lowercase().chars() {
                if matches!(c, '%' | '_' | '\\') {
                    p.push('\\');
                }
                p.push(c);
            }
            p.push('%');
            self.push(clause, Arg::Text(p));
        }
    }

    /// `SELECT {select}` with the clauses, `ORDER BY {order}` and a limit of
    /// one more than the page size, bound and ready to fetch.
    pub(crate) fn select<'q, O>(
        mut self,
        select: &str,
        order: &str,
        limit: u32,
    ) -> QueryAs<'q, Any, O, AnyArguments>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        self.args.push(Arg::Int(i64::from(page_size(limit)) + 1));
        let filter = if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {select}{filter} ORDER BY {order} LIMIT ${}",
            self.args.len()
        );
        let mut q = sqlx::query_as(AssertSqlSafe(sql));
        for a in self.args {
            q = match a {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        q
    }
}

/// Rows per page: 50 by default, at most 500.
fn page_size(limit: u32) -> u32 {
    match limit {
        0 => 50,
        n => n.min(500),
    }
}

/// A page of `items` (fetched with one extra), with the cursor of its last.
pub(crate) fn page<T>(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let size = page_size(limit) as usize;
    let next_cursor = if items.len() > size {
        items.truncate(size);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

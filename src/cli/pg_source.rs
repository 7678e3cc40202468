//! `rows sync --from-postgres`: a query's rows as records, streamed as they come (a bounded
//! channel holds the connection back while the sync catches up).
//!
//! PostgreSQL writes each row's columns as JSON itself (`row_to_json` over the query), so
//! values come out as a user expects: NUMERIC with its exact digits, integers, floats, bools,
//! text, date as YYYY-MM-DD, uuid as a string, json/jsonb nested, arrays as arrays, NULL as
//! null; timestamp (taken as UTC) and timestamptz are RFC 3339 with `Z`. The id column is the
//! record's id, as its text.

use futures_util::StreamExt as _;
use sqlx::{
    AssertSqlSafe, Column as _, Connection as _, Executor as _, Row as _, SqlSafeStr as _,
    TypeInfo as _,
};
use tokio::sync::mpsc;

use super::client::Failure;
use crate::grpc::proto;
use crate::store::redact_store_url;

/// Records read ahead of the sync, at most.
const READ_AHEAD: usize = 2_000;

pub(crate) struct PgSource {
    rows: mpsc::Receiver<Result<proto::SyncRecord, Failure>>,
}

/// `"name"`, quotes in it doubled.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The select-list expression writing column `c` of the query (`q`) as JSON would have it.
fn column_expr(name: &str, type_name: &str) -> String {
    let c = format!("q.{}", ident(name));
    match type_name {
        "TIMESTAMP" => format!(
            "CASE WHEN isfinite({c}) THEN (to_json({c}) #>> '{{}}') || 'Z' ELSE {c}::text END"
        ),
        "TIMESTAMPTZ" => format!(
            "CASE WHEN isfinite({c}) THEN (to_json({c} AT TIME ZONE 'UTC') #>> '{{}}') || 'Z' \
             ELSE {c}::text END"
        ),
        _ => c,
    }
}

impl PgSource {
    /// Connects, checks the query and its id column, and starts reading.
    pub(crate) async fn open(url: &str, query: &str, id_column: &str) -> Result<PgSource, Failure> {
        let secret = url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty());
        let shown = redact_store_url(url);
        // Never the password, even if an error quoted it.
        let clean = move |e: &dyn std::fmt::Display| {
            let text = e.to_string();
            match &secret {
                Some(p) => text.replace(p.as_str(), "[redacted]"),
                None => text,
            }
        };
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| Failure::Unreachable(format!("--from-postgres {shown}: {}", clean(&e))))?;
        sqlx::raw_sql("SET TimeZone = 'UTC'; SET default_transaction_read_only = on")
            .execute(&mut conn)
            .await
            .map_err(|e| Failure::Unreachable(format!("--from-postgres {shown}: {}", clean(&e))))?;
        let query = query.trim().trim_end_matches(';').trim_end().to_owned();
        let statement = conn
            .prepare(AssertSqlSafe(query.clone()).into_sql_str())
            .await
            .map_err(|e| Failure::Usage(format!("--query: {}", clean(&e))))?;
        let columns: Vec<(String, String)> = sqlx::Statement::columns(&statement)
            .iter()
            .map(|c| (c.name().to_owned(), c.type_info().name().to_owned()))
            .collect();
        drop(statement);
        if columns.is_empty() {
            return Err(Failure::Usage("--query: returns no columns".into()));
        }
        for (i, (name, _)) in columns.iter().enumerate() {
            if columns[..i].iter().any(|(n, _)| n == name) {
                return Err(Failure::Usage(format!(
                    "--query: the column {name:?} appears twice (name them apart with AS)"
                )));
            }
        }
        if !columns.iter().any(|(n, _)| n == id_column) {
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Failure::Usage(format!(
                "--id-column {id_column:?}: the query has no such column (it has {})",
                names.join(", ")
            )));
        }
        let list: Vec<String> = columns
            .iter()
            .map(|(n, t)| format!("{} AS {}", column_expr(n, t), ident(n)))
            .collect();
        let sql = format!(
            "SELECT (q.{id})::text, row_to_json(r)::text FROM ({query}) AS q \
             CROSS JOIN LATERAL (SELECT {list}) AS r",
            id = ident(id_column),
            list = list.join(", "),
        );
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let id_column = id_column.to_owned();
        tokio::spawn(async move {
            let mut rows = conn.fetch(sqlx::query(AssertSqlSafe(sql)));
            let mut n = 0u64;
            while let Some(row) = rows.next().await {
                n += 1;
                let record = row
                    .map_err(|e| Failure::Usage(format!("--query: {}", clean(&e))))
                    .and_then(|row| {
                        let id: Option<String> = row.try_get(0).map_err(|e| {
                            Failure::Usage(format!("--query: row {n}: {}", clean(&e)))
                        })?;
                        let columns: String = row.try_get(1).map_err(|e| {
                            Failure::Usage(format!("--query: row {n}: {}", clean(&e)))
                        })?;
                        match id {
                            Some(id) if !id.is_empty() => Ok(proto::SyncRecord {
                                id,
                                columns_json: columns.into_bytes(),
                            }),
                            _ => Err(Failure::Usage(format!(
                                "--query: row {n}: the id column {id_column:?} is NULL or empty"
                            ))),
                        }
                    });
                let failed = record.is_err();
                if tx.send(record).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(PgSource { rows: rx })
    }

    /// The next record; `None` after the last.
    pub(crate) async fn next(&mut self) -> Result<Option<proto::SyncRecord>, Failure> {
        self.rows.recv().await.transpose()
    }
}

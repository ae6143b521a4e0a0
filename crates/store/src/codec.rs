//! How both SQL stores flatten lists into TEXT columns and map driver errors. Shared so the
//! SQLite and PostgreSQL stores read and write the very same column contents.

use sspr_app::ports::StoreError;
use sspr_domain::Method;

pub(crate) fn err(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

pub(crate) fn join<T: AsRef<str>>(v: &[T]) -> String {
    v.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(",")
}

pub(crate) fn methods_csv(v: &[Method]) -> String {
    v.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}

pub(crate) fn parse_methods(s: &str) -> Vec<Method> {
    s.split(',').filter_map(Method::parse).collect()
}

pub(crate) fn split(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

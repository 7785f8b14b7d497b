//! Spin's host interfaces (`fermyon:spin/*@2.0.0`) as components see them: variables,
//! SQLite and MySQL. Each lives in its own module; this one generates the bindings.

pub mod mysql;
pub mod sqlite;
pub mod variables;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "fermyon:spin/host",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/sqlite.connection": crate::spin::sqlite::SqliteConnection,
            "fermyon:spin/mysql.connection": crate::spin::mysql::MysqlConnection,
        },
    });
}

pub use bindings::fermyon::spin::{
    mysql as mysql_wit, rdbms_types, sqlite as sqlite_wit, variables as variables_wit,
};

use wasmtime::component::{HasSelf, Linker};

use crate::state::HostState;

/// Adds every Spin interface this host implements to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    variables_wit::add_to_linker::<_, HasSelf<HostState>>(linker, |state| state)?;
    sqlite_wit::add_to_linker::<_, HasSelf<HostState>>(linker, |state| state)?;
    rdbms_types::add_to_linker::<_, HasSelf<HostState>>(linker, |state| state)?;
    mysql_wit::add_to_linker::<_, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

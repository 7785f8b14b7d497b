//! `fermyon:spin/variables`: a component reads the variables its manifest entry declares.

use super::variables_wit::{Error, Host};
use crate::state::HostState;

impl Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        if !crate::variables::is_valid_name(&name) {
            return Ok(Err(Error::InvalidName(name)));
        }
        Ok(match self.component.variables.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(Error::Undefined(format!(
                "no variable `{name}` for component `{}`",
                self.component.name
            ))),
        })
    }
}

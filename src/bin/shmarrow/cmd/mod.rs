//! One module per verb.

pub mod demo;
pub mod gc;
pub mod import;
pub mod inspect;
pub mod ls;
pub mod rm;

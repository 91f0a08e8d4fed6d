//! One module per verb.

pub mod demo;
pub mod gc;
pub mod import;
pub mod inspect;
pub mod ls;
pub mod map;
pub mod reduce;
pub mod rm;
pub mod worker;
pub mod workers;

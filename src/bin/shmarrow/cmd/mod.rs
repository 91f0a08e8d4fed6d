//! One module per verb.

pub mod consume;
pub mod create;
pub mod demo;
pub mod df;
pub mod export;
pub mod gc;
pub mod head;
pub mod import;
pub mod inspect;
pub mod ls;
pub mod map;
pub mod produce;
pub mod reduce;
pub mod rm;
pub mod worker;
pub mod workers;

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
#[cfg(feature = "flight")]
pub mod pull;
#[cfg(feature = "flight")]
pub mod push;
pub mod reduce;
pub mod rm;
#[cfg(feature = "flight")]
pub mod serve;
pub mod worker;

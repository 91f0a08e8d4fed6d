//! One module per verb.

pub mod consume;
pub mod create;
pub mod demo;
pub mod df;
pub mod export;
#[cfg(feature = "flight")]
pub mod flight_common;
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
pub mod workers;

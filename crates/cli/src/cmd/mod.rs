//! One module per subcommand.

pub(crate) mod add;
pub(crate) mod cat;
pub(crate) mod gc;
pub(crate) mod ls;
pub(crate) mod pin;
pub(crate) mod verify;

//! Codes a node sends when it closes a QUIC connection or resets a stream.
//!
//! They are QUIC application error codes (varints on the wire); the same
//! numbers serve for `CONNECTION_CLOSE` and `RESET_STREAM`/`STOP_SENDING`.

/// An application error code of the p2pfs protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    /// 0: nothing wrong (done, or no longer needed).
    Ok = 0,
    /// 1: the peer sent a malformed, oversized or unexpected message.
    Protocol = 1,
    /// 2: the peer sent data that failed verification.
    BadData = 2,
    /// 3: the peer exceeded a limit (streams, requests, rate).
    Limit = 3,
    /// 4: the peer was too slow (a request or a read timed out).
    Timeout = 4,
    /// 5: the node is shutting down.
    Shutdown = 5,
    /// 6: the node failed internally (disk, database); not the peer's fault.
    Internal = 6,
}

impl Code {
    /// The numeric code.
    pub const fn value(self) -> u32 {
        self as u32
    }

    /// The code for a number, if it is known.
    pub const fn from_value(v: u64) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::Protocol,
            2 => Self::BadData,
            3 => Self::Limit,
            4 => Self::Timeout,
            5 => Self::Shutdown,
            6 => Self::Internal,
            _ => return None,
        })
    }

    /// A short reason, sent with a connection close.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Protocol => "protocol error",
            Self::BadData => "bad data",
            Self::Limit => "limit exceeded",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutting down",
            Self::Internal => "internal error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for v in 0..7 {
            let c = Code::from_value(v).unwrap();
            assert_eq!(u64::from(c.value()), v);
        }
        assert_eq!(Code::from_value(99), None);
    }
}

//! The control messages between the host and a Python fork-server, one JSON
//! document per `SOCK_SEQPACKET` message on descriptor 5 in the box.
//!
//! Everything the fork-server sends is untrusted (it runs the plugin's
//! code): a message that does not parse as one of these is treated as a
//! broken box, never guessed at.

use serde::{Deserialize, Serialize};

use crate::result::HandlerError;

/// Host → fork-server: run one call. The call's descriptors travel with the
/// message (`SCM_RIGHTS`): the event, stdout, stderr, the result channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CallRequest {
    /// `RLIMIT_CPU` for the call's process, whole seconds.
    pub cpu_seconds: u64,
    /// Working directory of the call.
    pub cwd: String,
}

/// Fork-server → host, while it starts (a call's `started` and `exited` are
/// [`crate::livecall::CallMessage`]s).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub(crate) enum ServerMessage {
    /// The plugin is imported; calls may come.
    Ready {
        /// The fork-server's pid inside the box.
        pid: i64,
    },
    /// Importing the plugin failed; the fork-server exits.
    LoadFailed {
        /// Why.
        error: Option<HandlerError>,
        /// What the import printed (its tail).
        #[serde(default)]
        output: String,
    },
}

impl ServerMessage {
    /// Parse one message; `None` when it is not a message of the protocol.
    pub(crate) fn parse(bytes: &[u8]) -> Option<ServerMessage> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_from_what_the_wrapper_sends() {
        assert_eq!(
            ServerMessage::parse(br#"{"msg":"ready","pid":7}"#),
            Some(ServerMessage::Ready { pid: 7 })
        );

        match ServerMessage::parse(
            br#"{"msg":"load_failed","error":{"type":"SyntaxError","message":"bad","line":2},"output":"x"}"#,
        ) {
            Some(ServerMessage::LoadFailed {
                error: Some(e),
                output,
            }) => {
                assert_eq!(
                    (e.kind.as_str(), e.line, output.as_str()),
                    ("SyntaxError", Some(2), "x")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn anything_else_is_not_a_message() {
        for bad in [
            &b"{}"[..],
            br#"{"msg":"ready"}"#,
            br#"{"msg":"ready","pid":"7"}"#,
            br#"{"msg":"reboot"}"#,
            br#"{"exited": 0}"#,
            b"\xff\xfe",
        ] {
            assert_eq!(ServerMessage::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn requests_encode_as_the_wrapper_reads_them() {
        let r = CallRequest {
            cpu_seconds: 3,
            cwd: "/workspace".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cpu_seconds":3,"cwd":"/workspace"}"#
        );
    }
}

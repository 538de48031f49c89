//! Events as the platform checks them and as a handler reads them.
//!
//! An event is checked against the version's `input_schema` as the server
//! parses it (64-bit integers, doubles), and then handed to the handler as
//! the bytes the caller sent, which the handler's language parses itself:
//! Python reads an integer literal of any size exactly. An integer beyond 64
//! bits would therefore be checked as a rounded double while the handler
//! receives the exact value, so `maximum: 18446744073709551615` could be
//! passed by 18446744073709551616. Such integers are refused, located, before
//! anything is checked. (Fractions are parsed with correct rounding on both
//! sides, as `serde_json`'s `float_roundtrip` and Python's and JavaScript's
//! parsers all are.)

/// An integer literal outside the range of `i64` and `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WideInteger {
    /// JSON pointer to the value (`""` for the whole document).
    pub pointer: String,
    /// The literal as sent.
    pub literal: String,
}

enum Frame {
    Object { key: String, expect_key: bool },
    Array { index: usize },
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn pointer(stack: &[Frame]) -> String {
    let mut p = String::new();
    for f in stack {
        p.push('/');
        match f {
            Frame::Object { key, .. } => p.push_str(&escape_pointer(key)),
            Frame::Array { index } => p.push_str(&index.to_string()),
        }
    }
    p
}

/// The first integer literal of `json` that does not fit in 64 bits, if
/// any. `json` must be valid JSON (parse it first); this only tokenizes.
pub fn wide_integer(json: &[u8]) -> Option<WideInteger> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'{' => stack.push(Frame::Object {
                key: String::new(),
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object {
                    key,
                    expect_key: true,
                }) = stack.last_mut()
                {
                    *key = serde_json::from_slice(&json[start..=i.min(json.len() - 1)]).unwrap_or_default();
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i + 1 < json.len()
                    && matches!(json[i + 1], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let literal = &json[start..=i];
                let integral = !literal.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                let text = std::str::from_utf8(literal).unwrap_or_default();
                if integral && text.parse::<i64>().is_err() && text.parse::<u64>().is_err() {
                    return Some(WideInteger {
                        pointer: pointer(&stack),
                        literal: text.to_owned(),
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(text: &str) -> Option<(String, String)> {
        serde_json::from_str::<serde_json::Value>(text).expect("valid JSON");
        wide_integer(text.as_bytes()).map(|w| (w.pointer, w.literal))
    }

    #[test]
    fn integers_that_fit_64_bits_and_fractions_pass() {
        for ok in [
            "{}",
            "0",
            "-0",
            "18446744073709551615",
            "-9223372036854775808",
            r#"{"a": [1, 2.5, -3e300, 1e300, 123456789012345678901234567890.0]}"#,
            r#"{"s": "18446744073709551616 in a string", "t": "\"}, 99999999999999999999"}"#,
        ] {
            assert_eq!(wide(ok), None, "{ok}");
        }
    }

    #[test]
    fn wider_integers_are_found_with_their_pointer() {
        assert_eq!(
            wide("18446744073709551616"),
            Some(("".into(), "18446744073709551616".into()))
        );
        assert_eq!(
            wide(r#"{"a": {"b/c": [0, 1, -9223372036854775809]}}"#),
            Some(("/a/b~1c/2".into(), "-9223372036854775809".into()))
        );
        assert_eq!(
            wide(r#"[{"x": 1}, {"y\"q": 340282366920938463463374607431768211456}]"#),
            Some(("/1/y\"q".into(), "340282366920938463463374607431768211456".into()))
        );
    }
}

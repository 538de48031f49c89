//! Say hello: a Warden native plugin built with the Rust SDK.

use serde::{Deserialize, Serialize};
use warden_plugin::Error;

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Debug, Serialize)]
struct Output {
    message: String,
}

fn greet(input: Input) -> Result<Output, Error> {
    let name = input.name.trim();
    if name.is_empty() {
        return Err(Error::new("ValidationError", "name must not be blank"));
    }
    Ok(Output {
        message: format!("Hello, {name}!"),
    })
}

fn main() {
    warden_plugin::run(greet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_and_refuses_blank_names() {
        let ok = greet(Input { name: " Ada ".into() }).unwrap();
        assert_eq!(ok.message, "Hello, Ada!");
        assert_eq!(
            greet(Input { name: "  ".into() }).unwrap_err().kind,
            "ValidationError"
        );
    }
}

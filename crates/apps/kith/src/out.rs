//! How commands print what `--json` asks for: one JSON document per line.

use serde::Serialize;

pub fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

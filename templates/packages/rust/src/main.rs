//! A fuse node package (oneshot): the JSON request arrives on stdin, each scalar
//! input also as $FUSE_PARAM_<NAME>; print one JSON reply on stdout:
//! {"output": ...} or {"error": {"message": "...", "retryable": false}}.
//! stderr lines go to the run's log. See docs/node-protocol.md.

use std::io::Read;

fn main() {
    let mut request = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut request) {
        println!(r#"{{"error": {{"message": "cannot read the request: {e}", "retryable": false}}}}"#);
        return;
    }
    let text = std::env::var("FUSE_PARAM_TEXT").unwrap_or_default();
    eprintln!("got {} characters", text.chars().count());
    println!(
        r#"{{"output": {{"chars": {}, "request_bytes": {}}}}}"#,
        text.chars().count(),
        request.len()
    );
}

//! The configuration file: any text either is refused with a message or gives a
//! configuration that is checked without panicking, and that written back as TOML reads as
//! the same configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sspr::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut cfg = match Config::parse(text) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.is_empty(), "a refusal without a message: {text:?}");
            return;
        }
    };
    let written = match toml::to_string(&cfg) {
        Ok(w) => w,
        Err(e) => panic!("a parsed configuration does not write back: {e}\n{text}"),
    };
    match Config::parse(&written) {
        Ok(again) => assert_eq!(
            toml::to_string(&again).ok().as_deref(),
            Some(written.as_str())
        ),
        Err(e) => panic!("written back, it does not read: {e}\n{written}"),
    }
    // check() opens the files a configuration names: fuzzed paths would test the machine's
    // file system (a FIFO blocks, /dev/zero never ends), not sspr.
    cfg.tls.cert_file = None;
    cfg.tls.key_file = None;
    cfg.secret_key_file = None;
    cfg.breached_passwords_file = None;
    for problem in cfg.check() {
        assert!(!problem.is_empty());
    }
});

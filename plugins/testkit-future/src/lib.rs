//! `testkit-future`: a connector built against `weir:plugin@0.3.0`, a contract
//! version this host does not accept. The host must refuse it before
//! instantiating, naming both versions. Not a useful plugin.

wit_bindgen::generate!({
    inline: r#"
        package weir:plugin@0.3.0;

        interface connector {
            describe: func() -> string;
        }

        world connector-plugin {
            export connector;
        }
    "#,
});

struct Future;

impl exports::weir::plugin::connector::Guest for Future {
    fn describe() -> String {
        "future".to_owned()
    }
}

export!(Future);

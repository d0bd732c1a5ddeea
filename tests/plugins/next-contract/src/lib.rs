//! A reducer built against a contract version this host does not speak
//! (`streamfold:reducer@0.2.0`, as a later SDK would build it): the host must refuse
//! to register it, and say which version it was built for.

// Only for wasm32: the component ABI's symbol names are not valid in a native shared
// library (the workspace also builds this crate for the host).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package streamfold:reducer@0.2.0;

            interface types {
                record info {
                    name: string,
                    version: string,
                    aggregate-type: string,
                    handles: list<string>,
                }
            }

            interface reducer {
                use types.{info as reducer-info};
                info: func() -> reducer-info;
            }

            world plugin {
                export reducer;
            }
        ",
    });

    use exports::streamfold::reducer::reducer::Guest;
    use streamfold::reducer::types::Info;

    struct Next;

    impl Guest for Next {
        fn info() -> Info {
            Info {
                name: "next".into(),
                version: "1.0.0".into(),
                aggregate_type: "user".into(),
                handles: Vec::new(),
            }
        }
    }

    export!(Next);
}

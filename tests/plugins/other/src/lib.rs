//! A valid component that implements another world than `streamfold:reducer/plugin`:
//! the host must refuse to register it.

#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package test:other;

            world other {
                export run: func();
            }
        ",
    });

    struct Other;

    impl Guest for Other {
        fn run() {}
    }

    export!(Other);
}

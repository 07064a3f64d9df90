//! Properties of layering and rendering: an override always wins, an unknown reference is
//! always an error, and rendering is deterministic whatever order the file lists things in.

use plus_manifest::{Environments, Limits, Source, parse_environments};
use proptest::prelude::*;

/// One layer of a chain: what it sets, if anything.
#[derive(Debug, Clone)]
struct Layer {
    constant: Option<u8>,
    app_constant: Option<u8>,
    build_type: Option<u8>,
}

fn layer() -> impl Strategy<Value = Layer> {
    (any::<Option<u8>>(), any::<Option<u8>>(), any::<Option<u8>>()).prop_map(
        |(constant, app_constant, build_type)| Layer { constant, app_constant, build_type },
    )
}

/// A file with one application and a chain of environments `e0` (the root) .. `eN`, each
/// starting from the one before.
fn file(layers: &[Layer], extra_constants: &[(String, String)]) -> String {
    let mut text = String::from(
        "version: v1\napps:\n  - app: svc\n    source: s\n    buildType: base\n    check: /c\n    port: 80\n    config: [svc.conf]\nenvironments:\n",
    );
    for (i, layer) in layers.iter().enumerate() {
        text += &format!("  - name: e{i}\n");
        if i > 0 {
            text += &format!("    from: e{}\n", i - 1);
        }
        text += "    constants:\n      root: r\n";
        if let Some(v) = layer.constant {
            text += &format!("      c: \"env{v}\"\n");
        }
        for (name, value) in extra_constants {
            text += &format!("      {name}: \"{value}\"\n");
        }
        text += "    apps:\n      svc:\n";
        if let Some(v) = layer.build_type {
            text += &format!("        buildType: b{v}\n");
        }
        if let Some(v) = layer.app_constant {
            text += &format!("        constants:\n          c: \"app{v}\"\n");
        }
    }
    text
}

fn parse(text: &str) -> Environments {
    parse_environments(Source::new("environments.yaml", text), Limits::default())
        .unwrap_or_else(|r| panic!("{r}\n{text}"))
}

proptest! {
    /// The value of the nearest layer that sets it wins; a constant set for the application in
    /// any layer wins over the environment's; nothing set means the registry's base.
    #[test]
    fn the_nearest_override_wins(layers in prop::collection::vec(layer(), 1..6)) {
        let environments = parse(&file(&layers, &[]));
        let leaf = format!("e{}", layers.len() - 1);
        let resolved = environments.resolve(&leaf).unwrap();
        let app = &resolved.apps[&"svc".parse::<plus_core::AppCode>().unwrap()];
        let nearest = |pick: fn(&Layer) -> Option<u8>| {
            layers.iter().enumerate().rev().find_map(|(i, l)| pick(l).map(|v| (i, v)))
        };
        let expected_build = nearest(|l| l.build_type).map_or("base".to_owned(), |(_, v)| format!("b{v}"));
        prop_assert_eq!(&app.build_type.value, &expected_build);
        let expected_constant = nearest(|l| l.app_constant)
            .map(|(i, v)| (i, format!("app{v}")))
            .or_else(|| nearest(|l| l.constant).map(|(i, v)| (i, format!("env{v}"))));
        match expected_constant {
            Some((i, value)) => {
                let got = &app.constants["c"];
                prop_assert_eq!(&got.value.value, &value);
                let layer = format!("e{i}");
                let origin = got.origin.to_string();
                prop_assert!(origin.starts_with(&format!("environment {leaf}, ")), "{}", origin);
                prop_assert!(i == layers.len() - 1 || origin.contains(&format!("from {layer},")), "{}", origin);
            }
            None => prop_assert!(!app.constants.contains_key("c")),
        }
    }

    /// A template naming a constant that no layer defines never renders, whatever the name.
    #[cfg(feature = "templates")]
    #[test]
    fn an_unknown_reference_is_always_an_error(
        layers in prop::collection::vec(layer(), 1..4),
        name in "[a-z][a-z0-9_]{0,8}(\\.[a-z][a-z0-9_]{0,8}){0,2}",
    ) {
        prop_assume!(name != "root" && name != "c" && !name.starts_with("c.") && !name.starts_with("root."));
        let environments = parse(&file(&layers, &[]));
        let resolved = environments.resolve(&format!("e{}", layers.len() - 1)).unwrap();
        let mut templates = plus_manifest::Templates::new();
        templates.insert("svc.conf", format!("x={{{{ const.{name} }}}}\n"));
        let result = resolved.render(&templates, &plus_manifest::Facts::planned(&resolved, "test"));
        let Err(plus_manifest::RenderError::Invalid(reports)) = result else {
            return Err(TestCaseError::fail(format!("`const.{name}` rendered")));
        };
        prop_assert_eq!(reports[0].diagnostics()[0].rule, plus_manifest::Rule::UnknownReference);
    }

    /// The same environment rendered twice, or from a file listing its constants in another
    /// order, gives the same bytes.
    #[cfg(feature = "templates")]
    #[test]
    fn rendering_is_deterministic(
        layers in prop::collection::vec(layer(), 1..4),
        constants in prop::collection::btree_map("k[a-z]{1,6}", "[a-z0-9 ]{0,10}", 0..8),
        seed in any::<u64>(),
    ) {
        let mut listed: Vec<(String, String)> = constants.into_iter().collect();
        let template = listed.iter().map(|(k, _)| format!("{k}={{{{ const.{k} }}}}\n")).collect::<String>()
            + "root={{ const.root }} port={{ app.port }} env={{ env.name }}\n";
        let render = |listed: &[(String, String)]| {
            let environments = parse(&file(&layers, listed));
            let resolved = environments.resolve(&format!("e{}", layers.len() - 1)).unwrap();
            let mut templates = plus_manifest::Templates::new();
            templates.insert("svc.conf", template.clone());
            let rendered = resolved.render(&templates, &plus_manifest::Facts::planned(&resolved, "test")).unwrap();
            rendered.files.values().flatten().map(|f| f.text().to_owned()).collect::<Vec<_>>()
        };
        let first = render(&listed);
        prop_assert_eq!(&first, &render(&listed));
        // Another order of the same constants.
        let mut state = seed | 1;
        for i in (1..listed.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            listed.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(first, render(&listed));
    }
}

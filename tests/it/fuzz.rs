//! Bad input, generated: the manifest parser, the format sniffer and the config loader take
//! arbitrary bytes and mutations of good input without panicking, and refuse what is wrong.

use std::path::Path;

use lifeboat::config::Config;
use lifeboat::manifest::Manifest;
use proptest::prelude::*;

const KEY: &str = "app/20261122T020000Z-7f3a/manifest.json";

fn good_manifest() -> String {
    include_str!("manifest_escape.json")
        .replace("data.sqlite.zst/../../../../etc/passwd", "data.sqlite.zst")
}

const GOOD_CONFIG: &str = "[storage]\ntype = \"s3\"\nbucket = \"b\"\npart_size_mib = 8\n[backup]\ncompression_level = 3\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\nrpo = \"26h\"\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_manifest_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Manifest::parse(KEY, &bytes);
    }

    #[test]
    fn mutated_manifests_parse_or_fail_cleanly(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = good_manifest().into_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        match Manifest::parse(KEY, &bytes) {
            Ok(m) => {
                // What parses still obeys the rules the restore relies on.
                prop_assert!(m.data.key.starts_with("data.") && !m.data.key.contains('/'));
                prop_assert_eq!(m.data.sha256.len(), 64);
                prop_assert_eq!(m.id.as_str(), "20261122T020000Z-7f3a");
            }
            Err(e) => prop_assert!(!e.to_string().contains('\n') || e.to_string().contains("JSON")),
        }
    }

    #[test]
    fn the_sniffer_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
        let _ = lifeboat::sniff::sniff(&bytes);
    }

    #[test]
    fn the_config_loader_takes_any_text(text in "\\PC{0,300}") {
        let _ = Config::parse(&text, Path::new("/x/lifeboat.toml"));
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_refused_with_file_and_line(
        line in 0usize..10,
        value in prop::sample::select(vec!["-1", "\"x\"", "[]", "{}", "true", "1.5", "\"\"", "99999999999999999999"]),
        unknown in "[a-z_]{1,12}",
    ) {
        let lines: Vec<&str> = GOOD_CONFIG.lines().collect();
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let i = [1, 2, 3, 5, 7, 8, 9, 10].get(line % 8).copied().unwrap_or(1);
        let key = lines[i].split(" = ").next().unwrap_or("type");
        edited[i] = format!("{key} = {value}");
        let text = edited.join("\n");
        if let Err(e) = Config::parse(&text, Path::new("/x/lifeboat.toml")) {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("/x/lifeboat.toml"), "{}", msg);
        }
        let unknown_key = format!("{GOOD_CONFIG}\n[backup2]\n{unknown} = 1\n");
        prop_assert!(Config::parse(&unknown_key, Path::new("/x/lifeboat.toml")).is_err());
        let typo = GOOD_CONFIG.replace("compression_level", &format!("zz_{unknown}"));
        prop_assert!(Config::parse(&typo, Path::new("/x/lifeboat.toml")).is_err());
    }
}

#[test]
fn the_good_inputs_used_above_are_good() {
    Manifest::parse(KEY, good_manifest().as_bytes()).unwrap();
    Config::parse(GOOD_CONFIG, Path::new("/x/lifeboat.toml")).unwrap();
}

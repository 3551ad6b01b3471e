//! Path rules (ZooKeeper's `PathUtils.validatePath`) and the reserved `/zookeeper` subtree,
//! which this front end serves itself (read-only): `/zookeeper`, `/zookeeper/config` (the
//! members, `config_node`; reconfiguration through it is refused) and `/zookeeper/quota`.

use conclave_proto::zookeeper::Code;

use crate::state_machine::zk_result::ZStat;

/// The reserved subtree's root.
pub const RESERVED: &str = "/zookeeper";

/// The ensemble's configuration node.
pub const CONFIG_NODE: &str = "/zookeeper/config";

/// Checks a client path; `sequential` checks it with a suffix appended (it may end in `/`).
///
/// # Errors
/// `BadArguments` for an empty or relative path, a trailing `/`, an empty, `.` or `..` name, or
/// a forbidden character (NUL, control characters, U+D800-U+F8FF, U+FFF0-U+FFFF).
pub fn validate(path: &str, sequential: bool) -> Result<(), Code> {
    let owned;
    let path = if sequential {
        owned = format!("{path}1");
        owned.as_str()
    } else {
        path
    };
    if !path.starts_with('/') {
        return Err(Code::BadArguments);
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(Code::BadArguments);
    }
    let bad_char = |c: char| {
        c == '\0'
            || ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c)
    };
    for name in path[1..].split('/') {
        if name.is_empty() || name == "." || name == ".." || name.chars().any(bad_char) {
            return Err(Code::BadArguments);
        }
    }
    Ok(())
}

/// Whether `path` is in the reserved subtree.
pub fn is_reserved(path: &str) -> bool {
    path == RESERVED || path.starts_with("/zookeeper/")
}

/// A reserved node's children and stat, if it exists.
pub fn reserved_node(path: &str) -> Option<(Vec<String>, ZStat)> {
    let children: Vec<String> = match path {
        RESERVED => vec!["config".into(), "quota".into()],
        "/zookeeper/config" | "/zookeeper/quota" => Vec::new(),
        _ => return None,
    };
    let stat = ZStat { num_children: children.len() as i32, ..ZStat::default() };
    Some((children, stat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_zookeepers_rules() {
        for ok in ["/", "/a", "/a/b-c_d.e", "/a/..b", "/x/\u{e9}"] {
            assert_eq!(validate(ok, false), Ok(()), "{ok}");
        }
        for bad in ["", "a", "/a/", "//", "/a//b", "/a/.", "/a/../b", "/a\0", "/\u{1}", "/\u{fff5}"] {
            assert_eq!(validate(bad, false), Err(Code::BadArguments), "{bad:?}");
        }
        assert_eq!(validate("/lock-", true), Ok(()));
        assert_eq!(validate("/dir/", true), Ok(()), "a sequential node may be named by its suffix alone");
        assert!(is_reserved("/zookeeper/config") && !is_reserved("/zookeeper2"));
    }
}

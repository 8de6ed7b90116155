//! The pure half of polling: the URL of the next request, the items of a page (their exact bytes
//! and ids), and the cursor after it. No I/O here.

use std::cmp::Ordering;
use std::ops::Range;

use bytes::Bytes;

use crate::config::{NextCursor, SyncConfig};
use crate::event::EventId;
use crate::verify::fields::JsonBody;

/// One item of a page: its id and its exact bytes in the page (never re-serialized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: EventId,
    pub body: Bytes,
}

/// A page, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Item>,
    /// The positions (from 0) of items with no id at `item_id`: skipped, said by the poller.
    pub without_id: Vec<usize>,
    /// `next_pointer` mode: the next page's token or URL, if the page names one.
    pub next: Option<String>,
}

/// The URL that fetches the page at `cursor` (`None`: from the beginning). In `next_pointer`
/// mode a cursor that is a whole URL is that URL, if [`check_origin`] allows it.
pub fn request_url(config: &SyncConfig, cursor: Option<&str>) -> Result<url::Url, String> {
    if let Some(url) = cursor_url(config, cursor) {
        check_origin(config, Some(&url))?;
        return Ok(url);
    }
    let mut url = config.url.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(cursor) = cursor {
            query.append_pair(&config.cursor_param, cursor);
        }
        if let Some((param, size)) = &config.limit {
            query.append_pair(param, &size.to_string());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

/// In `next_pointer` mode, a cursor that is a whole http(s) URL, parsed.
pub fn cursor_url(config: &SyncConfig, cursor: Option<&str>) -> Option<url::Url> {
    let (NextCursor::Pointer(_), Some(cursor)) = (&config.next, cursor) else {
        return None;
    };
    // Schemes are case-insensitive (RFC 3986 §3.1): `HTTPS://` is a URL too.
    let scheme = cursor.split_once("://").map(|(scheme, _)| scheme);
    if scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")) {
        url::Url::parse(cursor).ok()
    } else {
        None
    }
}

/// Refuses a next page's URL on another origin (scheme, host, port) than the configured sync
/// URL's: the request carries the provider's credentials (Alcméon's application secret is also
/// its webhook key), and a page must not be able to send them elsewhere. The error names the
/// origins only, never the URL's path or query.
pub fn check_origin(config: &SyncConfig, next: Option<&url::Url>) -> Result<(), String> {
    let Some(next) = next else { return Ok(()) };
    let (theirs, ours) = (next.origin(), config.url.origin());
    if theirs == ours {
        Ok(())
    } else {
        Err(format!(
            "the next page's URL is on {}, not on the sync URL's origin {}: not followed",
            theirs.ascii_serialization(),
            ours.ascii_serialization()
        ))
    }
}

/// Reads a page: the array at `items`, each item's id at `item_id`, the next token if any.
pub fn parse(config: &SyncConfig, body: &Bytes) -> Result<Page, String> {
    let document = JsonBody::try_parse(body).map_err(|err| format!("not JSON: {err}"))?;
    let spans = array_elements(body, &config.items)
        .ok_or_else(|| format!("no array at {:?}", config.items))?;
    let mut items = Vec::with_capacity(spans.len());
    let mut without_id = Vec::new();
    for (index, span) in spans.into_iter().enumerate() {
        // Read from the item's raw text, as webhooks' ids are: a number keeps its digits.
        // One without an id failed the page, round after round, every later item with it.
        match JsonBody::parse(&body[span.clone()]).event_id(&[&config.item_id]) {
            Some(id) => items.push(Item {
                id,
                body: body.slice(span),
            }),
            None => without_id.push(index),
        }
    }
    let next = match &config.next {
        NextCursor::Pointer(pointer) => document
            .text(&[pointer])
            .filter(|t| !t.is_empty())
            .map(|next| absolute(config, next)),
        NextCursor::HighestId { .. } => None,
    };
    Ok(Page {
        items,
        without_id,
        next,
    })
}

/// A next page's link relative to the sync URL (`/actions?page=2`, `?page=2`) as a whole URL:
/// taken for a token, it was sent as `cursor_param=/actions?page=2` and the chain stuck on the
/// first page. Tokens and whole URLs stay as they are.
fn absolute(config: &SyncConfig, next: String) -> String {
    if !next.starts_with(['/', '?']) {
        return next;
    }
    config.url.join(&next).map_or(next, |url| url.to_string())
}

/// The cursor after `page`: in highest-id mode the highest item id (+ 1 when inclusive), else
/// the page's next token; the current cursor when the page gives none.
pub fn next_cursor(config: &SyncConfig, current: Option<&str>, page: &Page) -> Option<String> {
    let found = match &config.next {
        NextCursor::HighestId { inclusive } => {
            let highest = page
                .items
                .iter()
                .map(|item| item.id.as_str())
                .reduce(|a, b| {
                    if compare_ids(b, a) == Ordering::Greater {
                        b
                    } else {
                        a
                    }
                });
            // A page of only older items (an API that ignored the cursor) leaves it; ids of
            // another kind than the cursor (text after a numeric `start_cursor`) cannot be older.
            let same_kind =
                |a: &str, b: &str| a.parse::<u128>().is_ok() == b.parse::<u128>().is_ok();
            highest.map(|id| after_id(id, *inclusive)).filter(|next| {
                current.is_none_or(|c| {
                    !same_kind(next, c) || compare_ids(next, c) == Ordering::Greater
                })
            })
        }
        NextCursor::Pointer(_) => page.next.clone(),
    };
    found.or_else(|| current.map(str::to_string))
}

/// The cursor that follows an id already seen: the id itself, or the next number when the API
/// returns the item at the cursor too. A non-numeric id cannot be incremented: the API returns
/// that item again, and the store keeps it once.
pub fn after_id(id: &str, inclusive: bool) -> String {
    match id.parse::<u128>() {
        Ok(n) if inclusive => n.saturating_add(1).to_string(),
        _ => id.to_string(),
    }
}

/// Whether another page should follow in this round.
pub fn has_more(
    config: &SyncConfig,
    page: &Page,
    before: Option<&str>,
    after: Option<&str>,
) -> bool {
    if after == before {
        return false;
    }
    match &config.next {
        NextCursor::HighestId { .. } => {
            // A full page is full with the items skipped for want of an id.
            let given = page.items.len() + page.without_id.len();
            !page.items.is_empty()
                && config
                    .limit
                    .as_ref()
                    .is_none_or(|(_, size)| given >= *size as usize)
        }
        NextCursor::Pointer(_) => page.next.is_some(),
    }
}

/// Event ids in order: numerically when both are numbers, else as text; a number is above any
/// text, so that among a provider's numeric ids a stray other one never counts as the highest.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Ok(_)) => Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// The byte ranges of the elements of the array at `pointer` in a valid JSON document. Of
/// duplicate keys the last counts, as in `serde_json::Value`.
fn array_elements(json: &[u8], pointer: &str) -> Option<Vec<Range<usize>>> {
    let mut at = skip_ws(json, 0);
    let tokens: Vec<String> = if pointer.is_empty() {
        Vec::new()
    } else {
        pointer
            .strip_prefix('/')?
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect()
    };
    for token in &tokens {
        at = child(json, at, token)?;
    }
    if json.get(at) != Some(&b'[') {
        return None;
    }
    let mut elements = Vec::new();
    let mut pos = skip_ws(json, at + 1);
    if json.get(pos) == Some(&b']') {
        return Some(elements);
    }
    loop {
        let end = skip_value(json, pos)?;
        elements.push(pos..end);
        pos = skip_ws(json, end);
        match json.get(pos)? {
            b',' => pos = skip_ws(json, pos + 1),
            b']' => return Some(elements),
            _ => return None,
        }
    }
}

/// The start of the member `token` of the object (or element of the array) at `at`.
fn child(json: &[u8], at: usize, token: &str) -> Option<usize> {
    match json.get(at)? {
        b'{' => {
            let mut found = None;
            let mut pos = skip_ws(json, at + 1);
            if json.get(pos) == Some(&b'}') {
                return None;
            }
            loop {
                let key_end = skip_value(json, pos)?;
                let key: String = serde_json::from_slice(&json[pos..key_end]).ok()?;
                pos = skip_ws(json, key_end);
                (json.get(pos)? == &b':').then_some(())?;
                let value = skip_ws(json, pos + 1);
                if key == token {
                    found = Some(value);
                }
                pos = skip_ws(json, skip_value(json, value)?);
                match json.get(pos)? {
                    b',' => pos = skip_ws(json, pos + 1),
                    b'}' => return found,
                    _ => return None,
                }
            }
        }
        b'[' => {
            let index: usize = token.parse().ok()?;
            array_elements(&json[at..], "")?
                .get(index)
                .map(|range| at + range.start)
        }
        _ => None,
    }
}

fn skip_ws(json: &[u8], mut pos: usize) -> usize {
    while json.get(pos).is_some_and(|b| b.is_ascii_whitespace()) {
        pos += 1;
    }
    pos
}

/// The end of the value starting at `pos`.
fn skip_value(json: &[u8], pos: usize) -> Option<usize> {
    match json.get(pos)? {
        b'"' => {
            let mut i = pos + 1;
            loop {
                match json.get(i)? {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            loop {
                match json.get(i)? {
                    b'"' => {
                        i = skip_value(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = pos;
            while json
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b']' | b'}') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            (i > pos).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncAuth;
    use std::time::Duration;

    fn config(next: NextCursor, limit: Option<u32>) -> SyncConfig {
        SyncConfig {
            url: url::Url::parse("https://vendor.example/api/actions?app=7").unwrap(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            cursor_param: "min_action_id".into(),
            limit: limit.map(|size| ("limit".to_string(), size)),
            items: "/data".into(),
            item_id: "/id".into(),
            next,
            start_cursor: None,
            max_pages_per_round: 10,
            max_page_bytes: 32 << 20,
            auth: SyncAuth::None,
        }
    }

    const INCLUSIVE: NextCursor = NextCursor::HighestId { inclusive: true };

    #[test]
    fn request_urls() {
        let c = config(INCLUSIVE, Some(100));
        assert_eq!(
            request_url(&c, Some("41")).unwrap().as_str(),
            "https://vendor.example/api/actions?app=7&min_action_id=41&limit=100"
        );
        assert_eq!(
            request_url(&c, None).unwrap().as_str(),
            "https://vendor.example/api/actions?app=7&limit=100"
        );
        let mut bare = config(INCLUSIVE, None);
        bare.url = url::Url::parse("https://vendor.example/a").unwrap();
        assert_eq!(
            request_url(&bare, None).unwrap().as_str(),
            "https://vendor.example/a"
        );
        let tokens = config(NextCursor::Pointer("/next".into()), None);
        assert_eq!(
            request_url(&tokens, Some("https://vendor.example/p/2?x=1"))
                .unwrap()
                .as_str(),
            "https://vendor.example/p/2?x=1"
        );
        assert_eq!(
            request_url(&tokens, Some("abc def")).unwrap().as_str(),
            "https://vendor.example/api/actions?app=7&min_action_id=abc+def"
        );
    }

    #[test]
    fn next_urls_are_followed_on_the_sync_urls_origin_only() {
        let tokens = config(NextCursor::Pointer("/next".into()), None);
        for same in [
            "https://vendor.example/p/2",
            "https://vendor.example:443/p/2",
            "HTTPS://VENDOR.example/other/path?q=1",
        ] {
            assert!(request_url(&tokens, Some(same)).is_ok(), "{same}");
            let url = cursor_url(&tokens, Some(same)).expect("a URL, whatever its case");
            assert_eq!(url.host_str(), Some("vendor.example"), "{same}");
        }
        for other in [
            "https://attacker.example/p/2?token=x",
            "http://vendor.example/p/2",
            "https://vendor.example:8443/p/2",
            "https://sub.vendor.example/p/2",
            "https://vendor.example.attacker.example/p/2",
        ] {
            let error = request_url(&tokens, Some(other)).unwrap_err();
            assert!(error.contains("not followed"), "{other}: {error}");
            assert!(!error.contains("/p/2"), "no path nor query in: {error}");
            let url = cursor_url(&tokens, Some(other));
            assert!(check_origin(&tokens, url.as_ref()).is_err(), "{other}");
        }
        // In highest-id mode a cursor is never a URL.
        let ids = config(INCLUSIVE, None);
        let url = request_url(&ids, Some("https://attacker.example/")).unwrap();
        assert_eq!(url.host_str(), Some("vendor.example"));
    }

    #[test]
    fn items_keep_their_exact_bytes() {
        let body = Bytes::from_static(
            br#"{ "meta": {"data": 1}, "data" : [ {"id": 12, "x": "a]}\"" } ,{"x":[1,{"y":2}],"id":"9"}, {"id":10.0} ] }"#,
        );
        let page = parse(&config(INCLUSIVE, None), &body).unwrap();
        let ids: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["12", "9", "10.0"]);
        assert_eq!(&page.items[0].body[..], br#"{"id": 12, "x": "a]}\"" }"#);
        assert_eq!(&page.items[1].body[..], br#"{"x":[1,{"y":2}],"id":"9"}"#);
    }

    #[test]
    fn numeric_ids_keep_their_digits() {
        let body = Bytes::from_static(
            br#"{"data":[{"id":100000000000000000000001},{"id":100000000000000000000002},{"id":1e0}]}"#,
        );
        let page = parse(&config(INCLUSIVE, None), &body).unwrap();
        let ids: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "100000000000000000000001",
                "100000000000000000000002",
                "1e0"
            ]
        );
    }

    #[test]
    fn nested_pointers_escapes_and_root_arrays() {
        let body = Bytes::from_static(br#"{"a/b":{"list":[[],[{"id":1}]]}}"#);
        let mut c = config(INCLUSIVE, None);
        c.items = "/a~1b/list/1".into();
        assert_eq!(parse(&c, &body).unwrap().items.len(), 1);
        c.items = String::new();
        let root = Bytes::from_static(br#" [ {"id": 3} ] "#);
        assert_eq!(parse(&c, &root).unwrap().items[0].id.as_str(), "3");
        let empty = Bytes::from_static(b"[]");
        assert!(parse(&c, &empty).unwrap().items.is_empty());
    }

    #[test]
    fn duplicate_keys_take_the_last_like_serde_json() {
        let body = Bytes::from_static(br#"{"data":[{"id":1}],"data":[{"id":2},{"id":3}]}"#);
        let page = parse(&config(INCLUSIVE, None), &body).unwrap();
        assert_eq!(page.items.len(), 2);
    }

    #[test]
    fn malformed_pages() {
        let c = config(INCLUSIVE, None);
        for (body, expected) in [
            (&b"<html>502</html>"[..], "not JSON"),
            (br#"{"data":{}}"#, "no array"),
            (br#"{"rows":[]}"#, "no array"),
        ] {
            let error = parse(&c, &Bytes::copy_from_slice(body)).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    /// Items without an id are told apart, not the page failed (it was, round after round).
    #[test]
    fn items_without_an_id_are_told() {
        let c = config(INCLUSIVE, None);
        let body = br#"{"data":[{"id":null},{"id":1},{"name":"x"},{"id":2}]}"#;
        let page = parse(&c, &Bytes::copy_from_slice(body)).unwrap();
        assert_eq!(page.without_id, [0, 2]);
        let ids: Vec<&str> = page.items.iter().map(|item| item.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
    }

    fn page(ids: &[&str]) -> Page {
        Page {
            items: ids
                .iter()
                .map(|id| Item {
                    id: EventId::new(*id).unwrap(),
                    body: Bytes::new(),
                })
                .collect(),
            without_id: Vec::new(),
            next: None,
        }
    }

    #[test]
    fn the_cursor_follows_the_highest_id() {
        let inclusive = config(INCLUSIVE, Some(3));
        let exclusive = config(NextCursor::HighestId { inclusive: false }, Some(3));
        let p = page(&["9", "100", "11"]);
        assert_eq!(
            next_cursor(&inclusive, Some("5"), &p).as_deref(),
            Some("101")
        );
        assert_eq!(
            next_cursor(&exclusive, Some("5"), &p).as_deref(),
            Some("100")
        );
        assert_eq!(
            next_cursor(&inclusive, Some("5"), &page(&[])).as_deref(),
            Some("5")
        );
        assert_eq!(next_cursor(&inclusive, None, &page(&[])), None);
        assert_eq!(
            next_cursor(&inclusive, Some("50"), &page(&["3", "4"])).as_deref(),
            Some("50"),
            "older items never move it back"
        );
        assert_eq!(
            next_cursor(&inclusive, Some("0"), &page(&["evt_b", "evt_a"])).as_deref(),
            Some("evt_b"),
            "text ids after a numeric start"
        );
        assert_eq!(
            next_cursor(&inclusive, None, &page(&["b", "a"])).as_deref(),
            Some("b")
        );
        assert!(has_more(&inclusive, &p, Some("5"), Some("101")));
        assert!(
            !has_more(&inclusive, &page(&["1", "2"]), None, Some("3")),
            "short page"
        );
        assert!(!has_more(
            &inclusive,
            &page(&["b", "a", "c"]),
            Some("c"),
            Some("c")
        ));
    }

    #[test]
    fn relative_next_links_are_made_whole_on_the_sync_url() {
        let c = config(NextCursor::Pointer("/next".into()), None);
        let next = |link: &str| {
            let body = format!(r#"{{"data":[],"next":"{link}"}}"#);
            parse(&c, &Bytes::from(body)).unwrap().next.unwrap()
        };
        let base = c.url.clone();
        assert_eq!(
            next("/actions?page=2"),
            base.join("/actions?page=2").unwrap().as_str()
        );
        assert_eq!(next("?page=3"), base.join("?page=3").unwrap().as_str());
        assert_eq!(next("tok2"), "tok2");
        let elsewhere = next("//elsewhere.example/x");
        let url = cursor_url(&c, Some(&elsewhere)).expect("a URL");
        assert!(check_origin(&c, Some(&url)).is_err(), "{elsewhere}");
    }

    #[test]
    fn next_tokens() {
        let c = config(NextCursor::Pointer("/paging/next".into()), None);
        let body = Bytes::from_static(br#"{"data":[{"id":"x"}],"paging":{"next":"tok2"}}"#);
        let p = parse(&c, &body).unwrap();
        assert_eq!(p.next.as_deref(), Some("tok2"));
        assert_eq!(next_cursor(&c, Some("tok1"), &p).as_deref(), Some("tok2"));
        assert!(has_more(&c, &p, Some("tok1"), Some("tok2")));
        let last = parse(
            &c,
            &Bytes::from_static(br#"{"data":[],"paging":{"next":null}}"#),
        );
        let last = last.unwrap();
        assert_eq!(
            next_cursor(&c, Some("tok2"), &last).as_deref(),
            Some("tok2")
        );
        assert!(!has_more(&c, &last, Some("tok2"), Some("tok2")));
    }

    #[test]
    fn ids_compare_numerically_when_numbers() {
        assert_eq!(compare_ids("9", "10"), Ordering::Less);
        assert_eq!(compare_ids("b", "a"), Ordering::Greater);
        assert_eq!(compare_ids("5", "sha256:ab"), Ordering::Greater);
        assert_eq!(compare_ids("evt_9", "10"), Ordering::Less);
        assert_eq!(after_id("41", true), "42");
        assert_eq!(after_id("41", false), "41");
        assert_eq!(after_id("x", true), "x");
    }
}

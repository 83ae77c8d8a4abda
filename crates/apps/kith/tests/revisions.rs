//! Local copies of a name kept current: `kith get PEER/NAME -o EXISTING_FILE` replaces the
//! file with the newest revision (only changed chunks move, one rename), and the stale
//! revision leaves `kith ls`.

mod common;

use common::*;
use kith_testkit::Result;
use serde_json::Value;

fn shared_ids(home: &std::path::Path) -> Result<Vec<(String, String)>> {
    let v = ok(home, &["ls"])?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let f = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    (f("id"), f("path"))
                })
                .collect()
        })
        .unwrap_or_default())
}

#[test]
fn getting_a_name_over_its_file_updates_it_in_place() -> Result<()> {
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &[])?;
    let _b = up(&hb, &["--bootstrap", &addr_of(&ha)?])?;
    let doc = t.path().join("report.bin");
    let mut data = noise(8 << 20, 7);
    std::fs::write(&doc, &data)?;
    let doc_s = doc.to_str().ok_or("path")?;
    let r1 = ok(&ha, &["publish", "report", doc_s])?;
    let name = r1["name"].as_str().ok_or("no name")?.to_owned();

    let out = t.path().join("copy.bin");
    let out_s = out.to_str().ok_or("path")?;
    ok(&hb, &["get", &name, "-o", out_s])?;
    assert!(std::fs::read(&out)? == data, "revision 1 fetched");

    // Revision 2: 256 KiB in the middle changed.
    let mid = data.len() / 2;
    for (i, b) in noise(256 << 10, 9).into_iter().enumerate() {
        if let Some(x) = data.get_mut(mid + i) {
            *x = b;
        }
    }
    std::fs::write(&doc, &data)?;
    let r2 = ok(&ha, &["publish", "report", doc_s])?;
    assert_eq!(r2["revision"], 2);
    let new_id = r2["id"].as_str().unwrap_or_default().to_owned();

    let last: Value = until("revision 2 over the old copy", || {
        let o = kith(&hb, &["get", "--json", &name, "-o", out_s])?;
        if !o.status.success() {
            return Err(format!("get failed: {}", stderr(&o)).into());
        }
        let v = json_of(&o)?;
        Ok((v["id"] == new_id.as_str()).then_some(v))
    })?;
    assert!(
        std::fs::read(&out)? == data,
        "the file now holds revision 2"
    );
    let fetched = num(&last, "fetched_bytes");
    assert!(
        fetched < 2 << 20,
        "only the changed chunks moved: {fetched} bytes of {}",
        data.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(t.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".kith-new"))
        .collect();
    assert!(leftovers.is_empty(), "no staging file is left");
    let at_out: Vec<String> = shared_ids(&hb)?
        .into_iter()
        .filter(|(_, p)| p == out_s)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        at_out,
        vec![new_id.clone()],
        "only the newest revision is listed"
    );

    // A content ID over a file with other content is still refused, with one line.
    let other = t.path().join("other.bin");
    std::fs::write(&other, b"something else")?;
    let err = fails(&hb, &["get", &new_id, "-o", other.to_str().ok_or("path")?])?;
    assert!(err.contains("already exists"), "{err}");
    Ok(())
}

/// Two copies of one file: deleting the recorded one keeps the other shared (under the
/// same ID); deleting that one too ends the share.
#[test]
fn deleting_one_copy_keeps_the_others_shared() -> Result<()> {
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &[])?;
    kith(&hb, &["init"])?;
    let config = hb.join("config.toml");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str("rescan_secs = 1\n");
    std::fs::write(&config, text)?;
    let _b = up(&hb, &["--bootstrap", &addr_of(&ha)?])?;
    let src = t.path().join("song.ogg");
    std::fs::write(&src, noise(3 << 20, 5))?;
    let id = ok(&ha, &["share", src.to_str().ok_or("path")?])?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (c1, c2) = (t.path().join("c1.ogg"), t.path().join("c2.ogg"));
    for c in [&c1, &c2] {
        ok(&hb, &["get", &id, "-o", c.to_str().ok_or("path")?])?;
    }
    let path_of = |home: &std::path::Path| -> Result<Option<String>> {
        Ok(shared_ids(home)?
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, p)| p))
    };
    let recorded = path_of(&hb)?.ok_or("not shared after the gets")?;
    let (gone, kept) = if recorded == c2.display().to_string() {
        (&c2, &c1)
    } else {
        (&c1, &c2)
    };
    std::fs::remove_file(gone)?;
    let kept_s = kept.display().to_string();
    until("the other copy shared", || {
        Ok((path_of(&hb)?.as_deref() == Some(kept_s.as_str())).then_some(()))
    })?;
    std::fs::remove_file(kept)?;
    until("the share gone with the last copy", || {
        Ok(path_of(&hb)?.is_none().then_some(()))
    })?;
    Ok(())
}

/// The gateway serves a file while it downloads (a media player can start at once): the
/// bytes come as the chunks arrive, and they are the file's; `kith cat` reads the same.
#[test]
fn the_gateway_serves_a_file_while_it_downloads() -> Result<()> {
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &[])?;
    let _b = up(
        &hb,
        &["--bootstrap", &addr_of(&ha)?, "--download-limit", "2M"],
    )?;
    let movie = t.path().join("movie.mp4");
    let data = noise(6 << 20, 11);
    std::fs::write(&movie, &data)?;
    let id = ok(&ha, &["share", movie.to_str().ok_or("path")?])?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let out = t.path().join("got.mp4");
    let get = Proc(
        std::process::Command::new(KITH)
            .arg("--home")
            .arg(&hb)
            .args(["get", &id, "-o", out.to_str().ok_or("path")?])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    until("the download running", || {
        let running = downloads(&hb)
            .and_then(|d| d.as_array().cloned())
            .is_some_and(|d| {
                d.iter()
                    .any(|p| p["id"] == id.as_str() && p["state"] == "downloading")
            });
        Ok(running.then_some(()))
    })?;
    let addr = std::fs::read_to_string(hb.join("api.addr"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = rt.block_on(async {
        let r = reqwest::get(format!("http://{}/content/{id}", addr.trim())).await?;
        let status = r.status();
        Ok::<_, reqwest::Error>((status, r.bytes().await?))
    })?;
    assert_eq!(status, 200);
    assert!(
        body.as_ref() == data.as_slice(),
        "the streamed bytes are the file's"
    );
    let cat = kith(&hb, &["cat", &id])?;
    assert!(
        cat.status.success() && cat.stdout == data,
        "{}",
        stderr(&cat)
    );
    drop(get);
    Ok(())
}

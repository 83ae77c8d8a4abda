//! `kith person`, `kith device …` and `kith group …`.

use anyhow::Result;
use kith_api as api;

use crate::args::{DeviceCmd, GroupCmd};
use crate::client::{Client, segment};
use crate::commands::print_json;

pub async fn person(c: &Client, json: bool) -> Result<()> {
    let p: api::Person = c.get("/person").await?;
    if json {
        print_json(&p);
        return Ok(());
    }
    println!("person {}", p.person);
    for d in &p.devices {
        let mut notes = Vec::new();
        if d.this {
            notes.push("this device");
        }
        if d.revoked {
            notes.push("revoked");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        println!("  device {}{notes}", d.device);
    }
    if !p.holds_person_key {
        println!("the person key is on another device (link and remove devices there)");
    }
    Ok(())
}

pub async fn device(c: &Client, cmd: DeviceCmd, json: bool) -> Result<()> {
    match cmd {
        DeviceCmd::Link => {
            let code: api::LinkCode = c.post("/devices/link", &serde_json::json!({})).await?;
            if json {
                print_json(&code);
            } else {
                println!("{}", code.code);
                eprintln!(
                    "on the other device: kith device join CODE  (valid {} minutes, once)",
                    code.expires_in / 60
                );
            }
        }
        DeviceCmd::Join { code } => {
            let p: api::Person = c.post("/devices/join", &api::JoinDevice { code }).await?;
            if json {
                print_json(&p);
            } else {
                println!("this device now acts for person {}", p.person);
            }
        }
        DeviceCmd::Remove { device } => {
            let path = format!("/devices/{}", segment(&device));
            let r: api::DeviceRemoved = c.delete(&path).await?;
            if json {
                print_json(&r);
            } else {
                println!("revoked device {}; every group stops trusting it", r.device);
            }
        }
    }
    Ok(())
}

fn print_group(g: &api::Group) {
    let admin = if g.admin { "  admin" } else { "" };
    let n = g.members;
    let s = if n == 1 { "" } else { "s" };
    println!("{}  {}  {n} member{s}{admin}", g.group, g.name);
}

pub async fn group(c: &Client, cmd: GroupCmd, json: bool) -> Result<()> {
    match cmd {
        GroupCmd::Create { name, history } => {
            let g: api::Group = c
                .post("/groups", &api::CreateGroup { name, history })
                .await?;
            if json {
                print_json(&g);
            } else {
                println!("created group {} ({})", g.name, g.group);
            }
        }
        GroupCmd::Invite {
            group,
            expires,
            uses,
            admin,
        } => {
            let req = api::InviteRequest {
                expires_in: Some(expires),
                uses: Some(uses),
                admin,
            };
            let path = format!("/groups/{}/invites", segment(&group));
            let inv: api::Invite = c.post(&path, &req).await?;
            if json {
                print_json(&inv);
            } else {
                println!("{}", inv.token);
                eprintln!("the invitee runs: kith group join TOKEN");
            }
        }
        GroupCmd::Join { token } => {
            let g: api::Group = c.post("/groups/join", &api::JoinGroup { token }).await?;
            if json {
                print_json(&g);
            } else {
                println!("joined group {} ({})", g.name, g.group);
            }
        }
        GroupCmd::Ls => {
            let list: Vec<api::Group> = c.get("/groups").await?;
            if json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no groups yet (kith group create NAME, or kith group join TOKEN)");
            } else {
                list.iter().for_each(print_group);
            }
        }
        GroupCmd::Members { group } => members(c, &group, json).await?,
        GroupCmd::Remove { group, person } => {
            let path = format!("/groups/{}/members/{}", segment(&group), segment(&person));
            let g: api::Group = c.delete(&path).await?;
            if json {
                print_json(&g);
            } else {
                println!("removed {person} from {}; the group key changed", g.name);
            }
        }
        GroupCmd::Leave { group } => {
            let path = format!("/groups/{}/leave", segment(&group));
            let g: api::Group = c.post(&path, &serde_json::json!({})).await?;
            if json {
                print_json(&g);
            } else {
                println!("left group {} ({})", g.name, g.group);
            }
        }
    }
    Ok(())
}

async fn members(c: &Client, group: &str, json: bool) -> Result<()> {
    let list: Vec<api::Member> = c
        .get(&format!("/groups/{}/members", segment(group)))
        .await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    for m in list {
        let admin = if m.admin { "  admin" } else { "" };
        let online = if m.online { "online" } else { "offline" };
        println!("{}  {online}{admin}", m.person);
        for d in m.devices {
            println!("  device {d}");
        }
    }
    Ok(())
}

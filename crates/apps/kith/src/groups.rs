//! `kith person`, `kith device …` and `kith group …`.

use anyhow::Result;
use kith_api as api;

use crate::args::{DeviceCmd, GroupCmd};
use crate::out::print_json;
use kith_api::Client;

pub async fn person(c: &Client, json: bool) -> Result<()> {
    let p = c.person().await?;
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
            let code = c.link_device().await?;
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
            let p = c.join_device(&api::JoinDevice { code }).await?;
            if json {
                print_json(&p);
            } else {
                println!("this device now acts for person {}", p.person);
            }
        }
        DeviceCmd::Remove { device } => {
            let r = c.remove_device(&device).await?;
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
            let g = c.create_group(&api::CreateGroup { name, history }).await?;
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
            let inv = c.invite(&group, &req).await?;
            if json {
                print_json(&inv);
            } else {
                println!("{}", inv.token);
                eprintln!("the invitee runs: kith group join TOKEN");
            }
        }
        GroupCmd::Join { token } => {
            let g = c.join_group(&api::JoinGroup { token }).await?;
            if json {
                print_json(&g);
            } else {
                println!("joined group {} ({})", g.name, g.group);
            }
        }
        GroupCmd::Ls => {
            let list = c.groups().await?;
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
            let g = c.remove_member(&group, &person).await?;
            if json {
                print_json(&g);
            } else {
                println!("removed {person} from {}; the group key changed", g.name);
            }
        }
        GroupCmd::Leave { group } => {
            let g = c.leave_group(&group).await?;
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
    let list = c.members(group).await?;
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

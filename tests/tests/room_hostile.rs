//! The room protocol against peers that lie: an outsider's hello, forged
//! entries (a bad signature, a non-member's key with a member's tag, a
//! member's entry replayed into another room), oversized frames. Each is
//! refused; the log only takes what a member really signed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use p2pfs_proto::{
    Hash, RoomId, RoomSecret, codec,
    room::{
        ALPN, EXPORTER_LABEL, Entry, EntryBody, Have, Hello, Op, Signature, SyncMsg, Welcome,
        signed_message,
    },
};
use p2pfs_swarm::{identity::SecretKey, room::query};
use p2pfs_tests::inproc::{close_code, node, raw_connect_as};

async fn read<T: serde::de::DeserializeOwned>(recv: &mut quinn::RecvStream) -> T {
    let mut h = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), recv.read_exact(&mut h))
        .await
        .expect("an answer")
        .unwrap();
    let mut body = vec![0u8; codec::frame_len(h).unwrap()];
    recv.read_exact(&mut body).await.unwrap();
    codec::decode(&body).unwrap()
}

async fn write<T: serde::Serialize>(send: &mut quinn::SendStream, v: &T) {
    send.write_all(&codec::encode_frame(v).unwrap())
        .await
        .unwrap();
}

fn exporter(c: &quinn::Connection) -> [u8; 32] {
    let mut x = [0u8; 32];
    c.export_keying_material(&mut x, EXPORTER_LABEL, b"")
        .unwrap();
    x
}

/// An entry by `key` (who may or may not know the room), with `tag` as its
/// membership tag.
fn entry(
    key: &SecretKey,
    room: &RoomId,
    tag: [u8; 32],
    seq: u64,
    parents: Vec<Hash>,
    text: &str,
) -> (Hash, Vec<u8>) {
    let body = EntryBody {
        author: key.public(),
        seq,
        parents,
        time: 1_800_000_000_000,
        member: tag,
        op: Op::Chat { text: text.into() },
    };
    let enc = codec::encode(&body).unwrap();
    let msg = signed_message(room, &enc);
    let e = Entry {
        sig: Signature(key.sign(&msg)),
        body: enc,
    };
    (Hash::of(&msg), e.encode().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_and_forged_entries_get_nothing_in() {
    let a = node().await;
    let ticket = a.node.create_room("team").await.unwrap();
    let secret = ticket.secret.clone();
    let room = secret.id();
    let chat =
        |n: &p2pfs_tests::inproc::TestNode| query::chat(n.node.store(), &room, 0, 1000).unwrap();

    // An outsider's hello (it does not know the secret): `Unknown`, and
    // nothing else on the stream.
    let outsider = SecretKey::generate().unwrap();
    let c = raw_connect_as(&outsider, &a.node, ALPN).await.unwrap();
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    let guess = RoomSecret([7; 32]).connection_proof(&exporter(&c), true);
    write(
        &mut send,
        &Hello {
            proof: guess,
            earlier: vec![],
        },
    )
    .await;
    assert_eq!(read::<Welcome>(&mut recv).await, Welcome::Unknown);
    let rest = recv.read_to_end(1 << 20).await.unwrap();
    assert!(rest.is_empty(), "an outsider gets nothing after Unknown");

    // A proof made for another connection is not accepted on this one.
    let c2 = raw_connect_as(&outsider, &a.node, ALPN).await.unwrap();
    let (mut send2, mut recv2) = c2.open_bi().await.unwrap();
    let replayed = secret.connection_proof(&exporter(&c), true);
    write(
        &mut send2,
        &Hello {
            proof: replayed,
            earlier: vec![],
        },
    )
    .await;
    assert_eq!(read::<Welcome>(&mut recv2).await, Welcome::Unknown);

    // A member (it knows the secret) gets in, and its proof is checked.
    let member = SecretKey::generate().unwrap();
    let c = raw_connect_as(&member, &a.node, ALPN).await.unwrap();
    let x = exporter(&c);
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    write(
        &mut send,
        &Hello {
            proof: secret.connection_proof(&x, true),
            earlier: vec![],
        },
    )
    .await;
    match read::<Welcome>(&mut recv).await {
        Welcome::Member { proof } => assert_eq!(proof, secret.connection_proof(&x, false)),
        w => panic!("{w:?}"),
    }
    // A's Have, A's Peers.
    let _: SyncMsg = read(&mut recv).await;
    let _: SyncMsg = read(&mut recv).await;
    let before = chat(&a);

    let other = RoomSecret([9; 32]);
    let forger = SecretKey::generate().unwrap();
    let tag = secret.member_tag(&member.public());
    // 1. A bad signature.
    let (_, mut bad_sig) = entry(&member, &room, tag, 0, vec![], "bad signature");
    let n = bad_sig.len();
    bad_sig[n - 1] ^= 1;
    // 2. A non-member's key carrying a member's tag.
    let (_, stolen_tag) = entry(&forger, &room, tag, 0, vec![], "not a member");
    // 3. A member's entry of another room replayed into this one.
    let (_, replay) = entry(
        &member,
        &other.id(),
        other.member_tag(&member.public()),
        0,
        vec![],
        "other room",
    );
    // 4. One real entry: it goes in, the others do not.
    let (h, good) = entry(&member, &room, tag, 0, vec![], "real");
    write(
        &mut send,
        &SyncMsg::Entries(vec![bad_sig, stolen_tag, replay, good]),
    )
    .await;
    // Our Have; its Synced reply means everything before it was taken in.
    write(&mut send, &SyncMsg::Have(Have::default())).await;
    loop {
        match read::<SyncMsg>(&mut recv).await {
            SyncMsg::Synced => break,
            _ => continue,
        }
    }
    let after = chat(&a);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(after.last().unwrap().ends_with(": real\n"));
    // An entry whose parents never arrive waits, and is not shown.
    let (_, orphan) = entry(&member, &room, tag, 1, vec![Hash::of(b"nowhere")], "orphan");
    write(&mut send, &SyncMsg::Entries(vec![orphan])).await;
    write(&mut send, &SyncMsg::Have(Have::default())).await;
    loop {
        if let SyncMsg::Synced = read::<SyncMsg>(&mut recv).await {
            break;
        }
    }
    assert_eq!(chat(&a).len(), after.len());
    let have = a.node.store().room_have(&room).unwrap();
    assert!(have.contains(&(member.public(), 1)), "{have:?} ({h})");

    // An oversized frame closes the connection with a protocol error.
    let mut huge = vec![0u8; 4];
    huge[..4].copy_from_slice(&(300_000u32).to_le_bytes());
    huge.extend(vec![0u8; 300_000]);
    let _ = send.write_all(&huge).await;
    assert_eq!(
        close_code(&c).await,
        Some(u64::from(p2pfs_proto::close::Code::Protocol.value()))
    );
    // The node goes on: the room still works for its owner.
    assert!(a.node.find_room("team").await.is_ok());
}

use std::collections::HashMap;

use super::*;

fn message(topic: &str, qos: QoS) -> Delivery {
    Delivery {
        topic: topic.into(),
        payload: Bytes::from_static(b"x"),
        qos,
        retain: false,
        meta: None,
    }
}

/// A store stand-in for the state machine's tests: message ids to deliveries.
fn loader(
    store: &HashMap<u64, Delivery>,
) -> impl FnMut(&[u64]) -> Result<Vec<Option<Delivery>>, ()> + '_ {
    |ids| Ok(ids.iter().map(|id| store.get(id).cloned()).collect())
}

#[test]
fn qos0_is_not_kept_for_offline_sessions() {
    let mut session = SessionState::new(10, 100, 1 << 20);
    assert_eq!(
        session.enqueue(message("a", QoS::AtMostOnce), 0, false),
        Enqueued::DroppedQos0
    );
    assert_eq!(
        session.enqueue(message("a", QoS::AtLeastOnce), 0, false),
        Enqueued::Queued(1)
    );
    assert_eq!(session.queued_len(), 1);
}

#[test]
fn the_qos1_bound_does_not_cut_an_online_subscribers_qos0_stream() {
    // max_queued = 1 used to let 2 of a 50-message QoS 0 burst through.
    let mut session = SessionState::new(10, 1, 1 << 20);
    for _ in 0..50 {
        assert!(matches!(
            session.enqueue(message("a", QoS::AtMostOnce), 0, true),
            Enqueued::Queued(_)
        ));
    }
    assert_eq!(session.dropped(), (0, 0));
    // And a QoS 1 message still finds room behind them.
    assert!(matches!(
        session.enqueue(message("b", QoS::AtLeastOnce), 0, true),
        Enqueued::Queued(_)
    ));
    assert_eq!(std::iter::from_fn(|| session.next_outgoing()).count(), 51);
}

#[test]
fn inflight_window_holds_back_qos1_and_keeps_order() {
    let mut session = SessionState::new(2, 100, 1 << 20);
    for topic in ["1", "2", "3"] {
        session.enqueue(message(topic, QoS::AtLeastOnce), 0, true);
    }
    session.enqueue(message("4", QoS::AtMostOnce), 0, true);
    let first = session.next_outgoing().unwrap();
    let second = session.next_outgoing().unwrap();
    assert_eq!((first.pkid, second.pkid), (Some(1), Some(2)));
    assert_eq!(session.next_outgoing(), None, "window of 2 is full");
    assert!(session.acknowledge(1));
    let third = session.next_outgoing().unwrap();
    assert_eq!(&*third.delivery.topic, "3");
    assert_eq!(&*session.next_outgoing().unwrap().delivery.topic, "4");
    assert!(!session.acknowledge(99));
}

#[test]
fn resume_redelivers_unacknowledged_with_dup_and_same_ids() {
    let mut session = SessionState::new(10, 100, 1 << 20);
    session.enqueue(message("a", QoS::AtLeastOnce), 0, true);
    session.enqueue(message("b", QoS::AtLeastOnce), 0, true);
    let a = session.next_outgoing().unwrap();
    let b = session.next_outgoing().unwrap();
    session.acknowledge(a.pkid.unwrap());
    let again = session.redeliveries(&mut no_store);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].pkid, b.pkid);
    assert!(again[0].dup);
}

#[test]
fn messages_the_subscriber_may_not_receive_are_skipped() {
    let mut session = SessionState::new(10, 100, 1 << 20);
    for (topic, id) in [("secret", 1), ("open", 2), ("secret", 3)] {
        session.enqueue(message(topic, QoS::AtLeastOnce), id, true);
    }
    let allowed = |delivery: &Delivery| &*delivery.topic != "secret";
    let sent = session.next_outgoing_where(allowed, &mut no_store).unwrap();
    assert_eq!((&*sent.delivery.topic, sent.pkid), ("open", Some(1)));
    assert_eq!(session.next_outgoing_where(allowed, &mut no_store), None);
    assert_eq!(session.queued_len(), 0);
    assert_eq!(session.inflight_len(), 1);
    assert_eq!(session.take_removed(), vec![(1, 1), (3, 3)]);
}

#[test]
fn removed_stored_messages_are_reported_for_the_store() {
    let mut session = SessionState::new(10, 2, 1 << 20);
    for (topic, id) in [("1", 11), ("2", 12), ("3", 13)] {
        session.enqueue(message(topic, QoS::AtLeastOnce), id, false);
    }
    assert_eq!(
        session.take_removed(),
        vec![(1, 11)],
        "the oldest made room"
    );
    let sent = session.next_outgoing().unwrap();
    session.acknowledge(sent.pkid.unwrap());
    assert_eq!(session.take_removed(), vec![(2, 12)]);
    assert!(session.take_removed().is_empty());
    // Messages only memory held have nothing to tell the store.
    session.enqueue(message("4", QoS::AtLeastOnce), 0, true);
    let _ = session.next_outgoing();
    let sent = session.next_outgoing().unwrap();
    session.acknowledge(sent.pkid.unwrap());
    assert!(session.take_removed().is_empty());
}

#[test]
fn restored_messages_are_read_back_in_order_and_keep_their_numbers() {
    let store = HashMap::from([
        (70, message("a", QoS::AtLeastOnce)),
        (90, message("b", QoS::AtLeastOnce)),
    ]);
    let mut session = SessionState::new(10, 100, 1 << 20);
    session.restore([(7, 70), (9, 90)]);
    assert_eq!(
        session.memory_bytes(),
        0,
        "restored messages stay in the store"
    );
    assert!(matches!(
        session.enqueue(message("c", QoS::AtLeastOnce), 100, false),
        Enqueued::Queued(10)
    ));
    let mut load = loader(&store);
    let topics: Vec<_> = std::iter::from_fn(|| session.next_outgoing_where(|_| true, &mut load))
        .map(|out| out.delivery.topic.to_string())
        .collect();
    assert_eq!(topics, ["a", "b", "c"]);
}

#[test]
fn evicted_messages_free_memory_and_come_back_in_order_with_their_ids() {
    let mut store = HashMap::new();
    let mut session = SessionState::new(2, 100, 1 << 20);
    for n in 1..=5u64 {
        let delivery = message(&format!("t{n}"), QoS::AtLeastOnce);
        store.insert(n, delivery.clone());
        session.enqueue(delivery, n, false);
    }
    // A QoS 1 message only memory holds cannot be evicted.
    session.enqueue(message("t6", QoS::AtLeastOnce), 0, false);
    assert_eq!(session.memory_bytes(), 6 * 3);
    assert_eq!(session.evictable_bytes(), 5 * 3);
    let sent = session
        .next_outgoing_where(|_| true, &mut loader(&store))
        .unwrap();
    assert_eq!(&*sent.delivery.topic, "t1");
    assert_eq!(
        session.evict(usize::MAX, u64::MAX),
        5 * 3,
        "queued and in flight"
    );
    assert_eq!((session.memory_bytes(), session.evictable_bytes()), (3, 0));
    let mut load = loader(&store);
    let next = session.next_outgoing_where(|_| true, &mut load).unwrap();
    assert_eq!((&*next.delivery.topic, next.pkid), ("t2", Some(2)));
    // The in-flight t1 comes back for a resume, with its packet id and DUP.
    let again = session.redeliveries(&mut load);
    let resent: Vec<_> = again
        .iter()
        .map(|o| (o.delivery.topic.to_string(), o.pkid, o.dup))
        .collect();
    assert_eq!(
        resent,
        [("t1".into(), Some(1), true), ("t2".into(), Some(2), true)]
    );
    session.acknowledge(1);
    session.acknowledge(2);
    let rest: Vec<_> = std::iter::from_fn(|| {
        let out = session.next_outgoing_where(|_| true, &mut load)?;
        session.acknowledge(out.pkid.unwrap());
        Some(out.delivery.topic.to_string())
    })
    .collect();
    assert_eq!(rest, ["t3", "t4", "t5", "t6"]);
    assert_eq!((session.memory_bytes(), session.evictable_bytes()), (0, 0));
}

#[test]
fn only_messages_the_store_has_made_durable_are_evicted() {
    let mut session = SessionState::new(10, 100, 1 << 20);
    session.enqueue(message("t1", QoS::AtLeastOnce), 0, false);
    session.mark_stored(7);
    session.enqueue(message("t2", QoS::AtLeastOnce), 0, false);
    session.mark_stored(9);
    assert_eq!(session.evictable_bytes(), 6);
    assert_eq!(session.evict(usize::MAX, 8), 3, "id 9 is not durable yet");
    assert_eq!(session.memory_bytes(), 3);
}

#[test]
fn eviction_frees_the_newest_first() {
    let mut session = SessionState::new(10, 100, 1 << 20);
    for n in 1..=4u64 {
        session.enqueue(message(&format!("t{n}"), QoS::AtLeastOnce), n, false);
    }
    assert_eq!(
        session.evict(4, u64::MAX),
        6,
        "whole messages, newest first"
    );
    assert_eq!(session.memory_bytes(), 6);
    let store = HashMap::new();
    // t1 and t2 are still in memory: sent without reading the store.
    let mut load = loader(&store);
    assert_eq!(
        &*session
            .next_outgoing_where(|_| true, &mut load)
            .unwrap()
            .delivery
            .topic,
        "t1"
    );
}

#[test]
fn an_unreadable_store_holds_the_queue_and_a_missing_message_is_skipped() {
    let mut session = SessionState::new(10, 100, 1 << 20);
    session.restore([(1, 10), (2, 20)]);
    assert_eq!(session.next_outgoing_where(|_| true, &mut no_store), None);
    assert_eq!(
        session.queued_len(),
        2,
        "kept for when the store can be read"
    );
    let store = HashMap::from([(20, message("b", QoS::AtLeastOnce))]);
    let out = session
        .next_outgoing_where(|_| true, &mut loader(&store))
        .unwrap();
    assert_eq!(&*out.delivery.topic, "b");
    assert_eq!(session.take_lost_in_store(), 1);
    assert_eq!(session.take_removed(), vec![(1, 10)]);
}

#[test]
fn dropping_for_memory_takes_the_oldest_qos1_that_only_memory_holds() {
    let mut session = SessionState::new(10, 100, 1 << 20);
    session.enqueue(message("q0", QoS::AtMostOnce), 0, true);
    session.enqueue(message("stored", QoS::AtLeastOnce), 5, true);
    session.enqueue(message("m1", QoS::AtLeastOnce), 0, true);
    session.enqueue(message("m2", QoS::AtLeastOnce), 0, true);
    assert_eq!(session.drop_oldest(3), (3, 1));
    assert_eq!(
        session.drop_oldest(100),
        (6, 1),
        "then the next QoS 1, then QoS 0"
    );
    assert_eq!(session.dropped(), (1, 2));
    assert_eq!(&*session.next_outgoing().unwrap().delivery.topic, "stored");
}

#[test]
fn full_queue_drops_oldest_qos1() {
    let mut session = SessionState::new(10, 2, 1 << 20);
    session.enqueue(message("1", QoS::AtLeastOnce), 0, false);
    session.enqueue(message("2", QoS::AtLeastOnce), 0, false);
    match session.enqueue(message("3", QoS::AtLeastOnce), 0, false) {
        Enqueued::DroppedOldestQos1(topic) => assert_eq!(topic.as_deref(), Some("1")),
        other => panic!("{other:?}"),
    }
    assert_eq!(session.dropped(), (0, 1));
    assert_eq!(&*session.next_outgoing().unwrap().delivery.topic, "2");
}

#[test]
fn slow_subscriber_loses_qos0_past_its_bound() {
    // Each test message is 2 bytes (topic "a", payload "x").
    let mut session = SessionState::new(10, 100, 4);
    for _ in 0..2 {
        assert!(matches!(
            session.enqueue(message("a", QoS::AtMostOnce), 0, true),
            Enqueued::Queued(_)
        ));
    }
    assert_eq!(
        session.enqueue(message("a", QoS::AtMostOnce), 0, true),
        Enqueued::DroppedQos0
    );
    assert_eq!(session.dropped(), (1, 0));
}

#[test]
fn packet_ids_skip_zero_and_ids_in_flight() {
    let mut session = SessionState::new(3, 100, 1 << 20);
    session.next_pkid = u16::MAX;
    for _ in 0..3 {
        session.enqueue(message("a", QoS::AtLeastOnce), 0, true);
    }
    let ids: Vec<_> = (0..3)
        .map(|_| session.next_outgoing().unwrap().pkid.unwrap())
        .collect();
    assert_eq!(ids, vec![u16::MAX, 1, 2]);
}

#[test]
fn subscriptions_replace_and_remove() {
    let mut session = SessionState::new(1, 1, 1);
    assert_eq!(session.subscribe("a/#", QoS::AtMostOnce), None);
    assert_eq!(
        session.subscribe("a/#", QoS::AtLeastOnce),
        Some(QoS::AtMostOnce)
    );
    assert_eq!(session.subscription_count(), 1);
    assert!(session.unsubscribe("a/#"));
    assert!(!session.unsubscribe("a/#"));
}

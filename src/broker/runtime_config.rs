//! The configuration keys an operator may change while the broker runs
//! (`mqadmin updateBrokerConfig`, UPDATE_BROKER_CONFIG). They are read on every request, so each
//! lives in its own atomic rather than behind a lock the shards would share; everything else in
//! `BrokerConfig` is fixed at start.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::config::BrokerConfig;

/// Keys UPDATE_BROKER_CONFIG accepts.
pub const RUNTIME_KEYS: [&str; 4] = [
    "brokerPermission",
    "autoCreateTopicEnable",
    "autoCreateSubscriptionGroup",
    "enablePropertyFilter",
];

pub struct RuntimeConfig {
    broker_permission: AtomicI32,
    auto_create_topic: AtomicBool,
    auto_create_group: AtomicBool,
    property_filter: AtomicBool,
}

impl RuntimeConfig {
    pub fn new(cfg: &BrokerConfig) -> Self {
        Self {
            broker_permission: AtomicI32::new(cfg.broker_permission),
            auto_create_topic: AtomicBool::new(cfg.auto_create_topic_enable),
            auto_create_group: AtomicBool::new(cfg.auto_create_subscription_group),
            property_filter: AtomicBool::new(cfg.enable_property_filter),
        }
    }

    pub fn broker_permission(&self) -> i32 {
        self.broker_permission.load(Ordering::Relaxed)
    }

    pub fn auto_create_topic(&self) -> bool {
        self.auto_create_topic.load(Ordering::Relaxed)
    }

    pub fn auto_create_group(&self) -> bool {
        self.auto_create_group.load(Ordering::Relaxed)
    }

    pub fn property_filter(&self) -> bool {
        self.property_filter.load(Ordering::Relaxed)
    }

    /// Applies `pairs`, all or none: every key must be one of [`RUNTIME_KEYS`] and every value
    /// valid as broker.properties would take it. Returns whether brokerPermission changed.
    pub fn update(&self, pairs: &[(String, String)]) -> Result<bool, String> {
        // Validate with the start-up parser, on a scratch config holding the current values.
        let mut scratch = BrokerConfig {
            broker_permission: self.broker_permission(),
            auto_create_topic_enable: self.auto_create_topic(),
            auto_create_subscription_group: self.auto_create_group(),
            enable_property_filter: self.property_filter(),
            ..BrokerConfig::default()
        };
        for (k, v) in pairs {
            if !RUNTIME_KEYS.contains(&k.as_str()) {
                return Err(format!(
                    "{k} cannot be changed while the broker runs (set it in broker.properties and \
                     restart); these can: {}",
                    RUNTIME_KEYS.join(", ")
                ));
            }
            scratch.set(k, v).map_err(|e| e.to_string())?;
        }
        let before = self.broker_permission();
        self.broker_permission
            .store(scratch.broker_permission, Ordering::Relaxed);
        self.auto_create_topic
            .store(scratch.auto_create_topic_enable, Ordering::Relaxed);
        self.auto_create_group
            .store(scratch.auto_create_subscription_group, Ordering::Relaxed);
        self.property_filter
            .store(scratch.enable_property_filter, Ordering::Relaxed);
        Ok(before != scratch.broker_permission)
    }

    /// The keys' current values, as GET_BROKER_CONFIG reports them.
    pub fn overlay(&self, props: &mut [(&'static str, String)]) {
        for (k, v) in props.iter_mut() {
            match *k {
                "brokerPermission" => *v = self.broker_permission().to_string(),
                "autoCreateTopicEnable" => *v = self.auto_create_topic().to_string(),
                "autoCreateSubscriptionGroup" => *v = self.auto_create_group().to_string(),
                "enablePropertyFilter" => *v = self.property_filter().to_string(),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_update_applies_all_or_nothing_and_reports_a_permission_change() {
        let r = RuntimeConfig::new(&BrokerConfig::default());
        assert_eq!(r.broker_permission(), 6);
        assert_eq!(
            r.update(&pairs(&[
                ("brokerPermission", "4"),
                ("enablePropertyFilter", "true")
            ])),
            Ok(true)
        );
        assert_eq!((r.broker_permission(), r.property_filter()), (4, true));
        assert_eq!(
            r.update(&pairs(&[("enablePropertyFilter", "false")])),
            Ok(false)
        );
        // One bad pair and nothing changes.
        let e = r
            .update(&pairs(&[
                ("brokerPermission", "6"),
                ("brokerPermission", "9"),
            ]))
            .expect_err("9 is not a permission");
        assert!(e.contains("brokerPermission"), "{e}");
        assert_eq!(r.broker_permission(), 4);
        let e = r
            .update(&pairs(&[
                ("autoCreateTopicEnable", "false"),
                ("listenPort", "1"),
            ]))
            .expect_err("not changeable at runtime");
        assert!(
            e.contains("listenPort") && e.contains("brokerPermission"),
            "{e}"
        );
        assert!(r.auto_create_topic());
        let mut props = vec![
            ("brokerPermission", "6".to_string()),
            ("listenPort", "1".to_string()),
        ];
        r.overlay(&mut props);
        assert_eq!(props[0].1, "4");
        assert_eq!(props[1].1, "1");
    }
}

//! SLA policies: the TOML contract, validation with errors that name the place, selection of
//! the policy that applies to an incident, the content hash, and the JSON form recorded in the
//! event log as "the policy version in force".
//!
//! Three layers:
//!
//! * [`PolicySetSpec`] / [`PolicySpec`] / [`CalendarSpec`]: the written
//!   shape (TOML file or JSON record), plain strings;
//! * [`PolicySet`] / [`Policy`] / [`Calendar`]: validated and normalised; serialising one
//!   writes its *canonical* spec (sorted, defaults made explicit, durations re-formatted), and
//!   the content hash is the sha256 of that canonical JSON, so reformatting the file does not
//!   change it while changing a target does;
//! * [`PolicyBinding`]: the one policy chosen for an incident plus the calendars it uses and
//!   the hash of the set it came from: self-contained, serialisable, what the clocks run on.

use crate::calendar::{ALWAYS, ALWAYS_CALENDAR, Calendar, CalendarSpec};
use crate::duration::{format_duration, parse_duration};
use crate::error::{ClockError, PolicyError, PolicyErrorKind};
use crate::types::{ClockKind, Priority, ReopenMode, Status};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Domain separator hashed before the canonical JSON; bump if the canonical form changes.
const HASH_DOMAIN: &[u8] = b"incident-sla/policy-set/v1\n";

// ---------------------------------------------------------------------------------------------
// Written shape
// ---------------------------------------------------------------------------------------------

/// The whole file: named calendars and an ordered list of policies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetSpec {
    /// Calendars by name (`24x7` is built in and reserved).
    #[serde(default)]
    pub calendars: BTreeMap<String, CalendarSpec>,
    /// Policies in selection order: the first whose `match` filters all match wins.
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}

/// One `[[policies]]` entry as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Unique, non-empty name; reported with every timer.
    pub name: String,
    /// Default calendar name (`24x7` when absent).
    #[serde(default)]
    pub calendar: Option<String>,
    /// Calendar override per priority key (`P1 = "24x7"`).
    #[serde(default)]
    pub calendars: BTreeMap<String, String>,
    /// Fractions of a target (strictly between 0 and 1) that raise warnings.
    #[serde(default)]
    pub warn_at: Vec<f64>,
    /// Statuses during which both clocks are paused (`["on_hold"]` when absent).
    #[serde(default)]
    pub pause_on: Option<Vec<String>>,
    /// Response targets per priority key; a priority without one has no response SLA.
    #[serde(default)]
    pub response: BTreeMap<String, String>,
    /// Resolution targets per priority key; a priority without one has no resolution SLA.
    #[serde(default)]
    pub resolution: BTreeMap<String, String>,
    /// Escalation steps, as fractions of the resolution target.
    #[serde(default)]
    pub escalation: Vec<EscalationSpec>,
    /// `restart` (default) or `continue`.
    #[serde(default)]
    pub reopen: Option<String>,
    /// Selection filters; absent = catch-all.
    #[serde(default, rename = "match")]
    pub match_: Option<MatchSpec>,
}

/// One `[[policies.escalation]]` step as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSpec {
    /// Fraction of the resolution target (> 0, may exceed 1).
    pub at: f64,
    /// Escalation level, from 1 (team lead) up to the VP.
    pub level: u32,
}

/// `[policies.match]` as written; an absent or empty list matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Service names (exact).
    #[serde(default)]
    pub services: Option<Vec<String>>,
    /// Assignment groups (exact).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Priority keys.
    #[serde(default)]
    pub priorities: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Validated model
// ---------------------------------------------------------------------------------------------

/// One escalation step: at `at` x the resolution target, escalate to `level`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// Fraction of the resolution target (> 0, may exceed 1).
    pub at: f64,
    /// Level to escalate to (>= 1).
    pub level: u32,
}

/// Selection filters; `None` matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatchFilter {
    /// Matching services.
    pub services: Option<BTreeSet<String>>,
    /// Matching groups.
    pub groups: Option<BTreeSet<String>>,
    /// Matching priorities.
    pub priorities: Option<BTreeSet<Priority>>,
}

impl MatchFilter {
    /// True when every present filter contains the incident's value.
    pub fn matches(&self, service: &str, group: &str, priority: Priority) -> bool {
        self.services.as_ref().is_none_or(|s| s.contains(service))
            && self.groups.as_ref().is_none_or(|g| g.contains(group))
            && self
                .priorities
                .as_ref()
                .is_none_or(|p| p.contains(&priority))
    }

    /// True when no filter is present (the policy is a catch-all).
    pub fn is_catch_all(&self) -> bool {
        self.services.is_none() && self.groups.is_none() && self.priorities.is_none()
    }
}

/// A validated, normalised policy. Serialises as its canonical [`PolicySpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    name: String,
    /// Calendar names are shared with every clock that runs on them (clocks hold a name each).
    calendar: Arc<str>,
    calendars: BTreeMap<Priority, Arc<str>>,
    warn_at: Vec<f64>,
    pause_on: BTreeSet<Status>,
    response: BTreeMap<Priority, SignedDuration>,
    resolution: BTreeMap<Priority, SignedDuration>,
    escalation: Vec<Escalation>,
    reopen: ReopenMode,
    filter: MatchFilter,
}

impl Policy {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of the calendar used for a priority (override, else the policy default).
    pub fn calendar_name(&self, priority: Priority) -> &str {
        self.calendar_name_shared(priority)
    }

    /// [`Policy::calendar_name`] as the shared name, so a clock keeps it without a copy.
    pub(crate) fn calendar_name_shared(&self, priority: Priority) -> &Arc<str> {
        self.calendars.get(&priority).unwrap_or(&self.calendar)
    }

    /// The target of a clock at a priority, if the policy sets one.
    pub fn target(&self, clock: ClockKind, priority: Priority) -> Option<SignedDuration> {
        match clock {
            ClockKind::Response => self.response.get(&priority).copied(),
            ClockKind::Resolution => self.resolution.get(&priority).copied(),
        }
    }

    /// Warning fractions, ascending.
    pub fn warn_at(&self) -> &[f64] {
        &self.warn_at
    }

    /// Statuses that pause the clocks.
    pub fn pause_on(&self) -> &BTreeSet<Status> {
        &self.pause_on
    }

    /// Does this status pause the clocks?
    pub fn pauses(&self, status: Status) -> bool {
        self.pause_on.contains(&status)
    }

    /// Escalation steps sorted by `at`, then level.
    pub fn escalation(&self) -> &[Escalation] {
        &self.escalation
    }

    /// What reopen does to the resolution clock.
    pub fn reopen(&self) -> ReopenMode {
        self.reopen
    }

    /// The selection filters.
    pub fn filter(&self) -> &MatchFilter {
        &self.filter
    }

    /// Names of every calendar this policy may use.
    pub fn calendar_names(&self) -> BTreeSet<&str> {
        std::iter::once(&*self.calendar)
            .chain(self.calendars.values().map(|c| &**c))
            .collect()
    }

    /// The canonical written form (defaults explicit, lists sorted, durations re-formatted).
    pub fn to_spec(&self) -> PolicySpec {
        let keyed = |m: &BTreeMap<Priority, SignedDuration>| {
            m.iter()
                .map(|(p, d)| (p.as_str().to_string(), format_duration(*d)))
                .collect()
        };
        let list = |s: &Option<BTreeSet<String>>| s.as_ref().map(|s| s.iter().cloned().collect());
        let match_ = (!self.filter.is_catch_all()).then(|| MatchSpec {
            services: list(&self.filter.services),
            groups: list(&self.filter.groups),
            priorities: self
                .filter
                .priorities
                .as_ref()
                .map(|p| p.iter().map(|p| p.as_str().to_string()).collect()),
        });
        PolicySpec {
            name: self.name.clone(),
            calendar: Some(self.calendar.to_string()),
            calendars: self
                .calendars
                .iter()
                .map(|(p, c)| (p.as_str().to_string(), c.to_string()))
                .collect(),
            warn_at: self.warn_at.clone(),
            pause_on: Some(
                self.pause_on
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect(),
            ),
            response: keyed(&self.response),
            resolution: keyed(&self.resolution),
            escalation: self
                .escalation
                .iter()
                .map(|e| EscalationSpec {
                    at: e.at,
                    level: e.level,
                })
                .collect(),
            reopen: Some(self.reopen.as_str().to_string()),
            match_,
        }
    }

    /// Validates one written policy; `known` holds every calendar name it may refer to.
    fn build(
        spec: &PolicySpec,
        index: usize,
        known: &BTreeSet<String>,
    ) -> Result<Policy, PolicyError> {
        let name = spec.name.trim().to_string();
        let at = |field: &str| format!("policies[{index}]({name:?}).{field}");
        if name.is_empty() {
            return Err(PolicyError::new(
                format!("policies[{index}].name"),
                PolicyErrorKind::EmptyPolicyName,
            ));
        }
        let check_calendar = |place: String, cal: &str| -> Result<Arc<str>, PolicyError> {
            if known.contains(cal) {
                Ok(Arc::from(cal))
            } else {
                Err(PolicyError::new(
                    place,
                    PolicyErrorKind::UnknownCalendar {
                        name: cal.to_string(),
                        known: known.iter().cloned().collect::<Vec<_>>().join(", "),
                    },
                ))
            }
        };
        let priority = |place: String, key: &str| -> Result<Priority, PolicyError> {
            key.parse::<Priority>()
                .map_err(|_| PolicyError::new(place, PolicyErrorKind::UnknownPriority(key.into())))
        };

        let calendar = check_calendar(at("calendar"), spec.calendar.as_deref().unwrap_or(ALWAYS))?;
        let mut calendars = BTreeMap::new();
        for (key, cal) in &spec.calendars {
            let place = at(&format!("calendars.{key}"));
            let p = priority(place.clone(), key)?;
            calendars.insert(p, check_calendar(place, cal)?);
        }

        let mut warn_at = Vec::new();
        for (i, &f) in spec.warn_at.iter().enumerate() {
            if !(f > 0.0 && f < 1.0) {
                return Err(PolicyError::new(
                    at(&format!("warn_at[{i}]")),
                    PolicyErrorKind::WarnAtOutOfRange(f),
                ));
            }
            warn_at.push(f);
        }
        warn_at.sort_by(f64::total_cmp);
        warn_at.dedup();

        let pause_on = match &spec.pause_on {
            None => BTreeSet::from([Status::OnHold]),
            Some(list) => {
                let mut set = BTreeSet::new();
                for (i, s) in list.iter().enumerate() {
                    let status = s.parse::<Status>().map_err(|_| {
                        PolicyError::new(
                            at(&format!("pause_on[{i}]")),
                            PolicyErrorKind::UnknownStatus(s.clone()),
                        )
                    })?;
                    set.insert(status);
                }
                set
            }
        };

        let targets = |field: &str, written: &BTreeMap<String, String>| {
            let mut out = BTreeMap::new();
            for (key, text) in written {
                let place = at(&format!("{field}.{key}"));
                let p = priority(place.clone(), key)?;
                let d = parse_duration(text).map_err(|e| {
                    PolicyError::new(
                        place,
                        PolicyErrorKind::BadDuration {
                            value: text.clone(),
                            reason: e.to_string(),
                        },
                    )
                })?;
                out.insert(p, d);
            }
            Ok::<_, PolicyError>(out)
        };
        let response = targets("response", &spec.response)?;
        let resolution = targets("resolution", &spec.resolution)?;

        let mut escalation = Vec::new();
        let mut levels = BTreeSet::new();
        for (i, step) in spec.escalation.iter().enumerate() {
            if !(step.at > 0.0 && step.at.is_finite()) {
                return Err(PolicyError::new(
                    at(&format!("escalation[{i}].at")),
                    PolicyErrorKind::EscalationAtNotPositive(step.at),
                ));
            }
            if step.level == 0 {
                return Err(PolicyError::new(
                    at(&format!("escalation[{i}].level")),
                    PolicyErrorKind::EscalationLevelZero,
                ));
            }
            if !levels.insert(step.level) {
                return Err(PolicyError::new(
                    at(&format!("escalation[{i}].level")),
                    PolicyErrorKind::DuplicateEscalationLevel(step.level),
                ));
            }
            escalation.push(Escalation {
                at: step.at,
                level: step.level,
            });
        }
        escalation.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.level.cmp(&b.level)));

        let reopen = match spec.reopen.as_deref().map(str::trim) {
            None | Some("restart") => ReopenMode::Restart,
            Some("continue") => ReopenMode::Continue,
            Some(other) => {
                return Err(PolicyError::new(
                    at("reopen"),
                    PolicyErrorKind::BadReopenMode(other.to_string()),
                ));
            }
        };

        let mut filter = MatchFilter::default();
        if let Some(m) = &spec.match_ {
            let strings = |list: &Option<Vec<String>>| {
                list.as_ref()
                    .map(|l| {
                        l.iter()
                            .map(|s| s.trim().to_string())
                            .collect::<BTreeSet<_>>()
                    })
                    .filter(|s| !s.is_empty())
            };
            filter.services = strings(&m.services);
            filter.groups = strings(&m.groups);
            if let Some(list) = &m.priorities {
                let mut set = BTreeSet::new();
                for (i, key) in list.iter().enumerate() {
                    set.insert(priority(at(&format!("match.priorities[{i}]")), key)?);
                }
                filter.priorities = (!set.is_empty()).then_some(set);
            }
        }

        Ok(Policy {
            name,
            calendar,
            calendars,
            warn_at,
            pause_on,
            response,
            resolution,
            escalation,
            reopen,
            filter,
        })
    }
}

impl Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_spec().serialize(serializer)
    }
}

/// Validates calendars; the returned name set includes the built-in `24x7`.
fn build_calendars(
    specs: &BTreeMap<String, CalendarSpec>,
    prefix: &str,
) -> Result<(BTreeMap<String, Calendar>, BTreeSet<String>), PolicyError> {
    let mut calendars = BTreeMap::new();
    for (name, spec) in specs {
        let place = format!("{prefix}.{name}");
        if name == ALWAYS {
            return Err(PolicyError::new(
                place,
                PolicyErrorKind::ReservedCalendarName(name.clone()),
            ));
        }
        calendars.insert(name.clone(), Calendar::build(spec, &place)?);
    }
    let mut known: BTreeSet<String> = calendars.keys().cloned().collect();
    known.insert(ALWAYS.to_string());
    Ok((calendars, known))
}

fn calendar_lookup<'a>(calendars: &'a BTreeMap<String, Calendar>, name: &str) -> &'a Calendar {
    // Names are validated on construction; the fallback is only reachable for `24x7`.
    calendars.get(name).unwrap_or(&ALWAYS_CALENDAR)
}

// ---------------------------------------------------------------------------------------------
// Policy set
// ---------------------------------------------------------------------------------------------

/// A validated policy file: calendars plus policies in selection order, with its content hash.
///
/// Serialises (JSON) as its canonical [`PolicySetSpec`]; deserialising validates again and
/// recomputes the hash, so a recorded version reads back to an equal set with the same hash.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    calendars: BTreeMap<String, Calendar>,
    policies: Vec<Policy>,
    hash: String,
    /// One shared binding per policy, handed to every incident that selects it.
    bindings: Vec<PolicyBinding>,
}

impl PolicySet {
    /// Parses and validates a TOML policy file.
    pub fn from_toml(text: &str) -> Result<PolicySet, PolicyError> {
        let spec: PolicySetSpec = toml::from_str(text)
            .map_err(|e| PolicyError::new("policy file", PolicyErrorKind::Parse(e.to_string())))?;
        PolicySet::from_spec(&spec)
    }

    /// Reads a recorded version written by [`PolicySet::to_json`].
    pub fn from_json(text: &str) -> Result<PolicySet, PolicyError> {
        let spec: PolicySetSpec = serde_json::from_str(text)
            .map_err(|e| PolicyError::new("policy JSON", PolicyErrorKind::Json(e.to_string())))?;
        PolicySet::from_spec(&spec)
    }

    /// Validates and normalises a written set.
    pub fn from_spec(spec: &PolicySetSpec) -> Result<PolicySet, PolicyError> {
        let (calendars, known) = build_calendars(&spec.calendars, "calendars")?;
        if spec.policies.is_empty() {
            return Err(PolicyError::new("policies", PolicyErrorKind::NoPolicies));
        }
        let mut policies: Vec<Policy> = Vec::with_capacity(spec.policies.len());
        for (index, p) in spec.policies.iter().enumerate() {
            let policy = Policy::build(p, index, &known)?;
            if policies.iter().any(|q| q.name == policy.name) {
                return Err(PolicyError::new(
                    format!("policies[{index}].name"),
                    PolicyErrorKind::DuplicatePolicyName(policy.name),
                ));
            }
            policies.push(policy);
        }
        let mut set = PolicySet {
            calendars,
            policies,
            hash: String::new(),
            bindings: Vec::new(),
        };
        set.hash = hash_json(&set.to_spec());
        set.bindings = set.policies.iter().map(|p| set.new_binding(p)).collect();
        Ok(set)
    }

    /// The canonical written form.
    pub fn to_spec(&self) -> PolicySetSpec {
        PolicySetSpec {
            calendars: self
                .calendars
                .iter()
                .map(|(n, c)| (n.clone(), c.to_spec()))
                .collect(),
            policies: self.policies.iter().map(Policy::to_spec).collect(),
        }
    }

    /// Canonical JSON, suitable for recording in the event log.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.to_spec()).unwrap_or_default()
    }

    /// Lowercase hex sha256 of the canonical JSON (prefixed by a format version tag).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Policies in selection order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// A calendar by name, including the built-in `24x7`.
    pub fn calendar(&self, name: &str) -> Option<&Calendar> {
        if name == ALWAYS {
            Some(&ALWAYS_CALENDAR)
        } else {
            self.calendars.get(name)
        }
    }

    /// The defined calendars (without `24x7`).
    pub fn calendars(&self) -> &BTreeMap<String, Calendar> {
        &self.calendars
    }

    /// The first policy whose filters all match.
    pub fn select(&self, service: &str, group: &str, priority: Priority) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.filter.matches(service, group, priority))
    }

    /// Selects the policy for an incident and packs it with its calendars and this set's hash.
    pub fn bind(
        &self,
        service: &str,
        group: &str,
        priority: Priority,
    ) -> Result<PolicyBinding, ClockError> {
        let policy =
            self.select(service, group, priority)
                .ok_or_else(|| ClockError::NoMatchingPolicy {
                    service: service.to_string(),
                    group: group.to_string(),
                    priority,
                })?;
        Ok(self.bind_policy(policy))
    }

    /// Binds the policy with this name, bypassing the `match` filters.
    pub fn bind_named(&self, name: &str) -> Option<PolicyBinding> {
        self.policy(name).map(|p| self.bind_policy(p))
    }

    /// Packs a given policy of this set (e.g. chosen by name) into a binding. Bindings of this
    /// set's policies are shared (one allocation per policy, however many incidents use it).
    pub fn bind_policy(&self, policy: &Policy) -> PolicyBinding {
        match self
            .policies
            .iter()
            .zip(&self.bindings)
            .find(|(p, _)| *p == policy)
        {
            Some((_, b)) => b.clone(),
            None => self.new_binding(policy),
        }
    }

    fn new_binding(&self, policy: &Policy) -> PolicyBinding {
        let calendars = policy
            .calendar_names()
            .into_iter()
            .filter_map(|n| self.calendars.get(n).map(|c| (n.to_string(), c.clone())))
            .collect();
        PolicyBinding {
            inner: std::sync::Arc::new(BindingData {
                set_hash: self.hash.clone(),
                policy: policy.clone(),
                calendars,
            }),
        }
    }
}

impl Serialize for PolicySet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_spec().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PolicySet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = PolicySetSpec::deserialize(deserializer)?;
        PolicySet::from_spec(&spec).map_err(serde::de::Error::custom)
    }
}

fn hash_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(HASH_DOMAIN);
    hasher.update(&json);
    hex::encode(hasher.finalize())
}

// ---------------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------------

/// The policy in force for one incident: the selected policy, the calendars it uses, and the
/// hash of the set it was selected from. Self-contained and serialisable; deserialising
/// re-validates.
#[derive(Debug, Clone)]
pub struct PolicyBinding {
    /// Shared: cloning a binding (one per incident) does not copy the policy.
    inner: std::sync::Arc<BindingData>,
}

#[derive(Debug, PartialEq)]
struct BindingData {
    set_hash: String,
    policy: Policy,
    calendars: BTreeMap<String, Calendar>,
}

impl PartialEq for PolicyBinding {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.inner, &other.inner) || self.inner == other.inner
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingSpec {
    set_hash: String,
    policy: PolicySpec,
    calendars: BTreeMap<String, CalendarSpec>,
}

impl PolicyBinding {
    /// The selected policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The content hash of the policy set this binding came from.
    pub fn set_hash(&self) -> &str {
        &self.inner.set_hash
    }

    /// A calendar by name (`24x7` included).
    pub fn calendar(&self, name: &str) -> &Calendar {
        calendar_lookup(&self.inner.calendars, name)
    }

    /// The calendar a priority runs on.
    pub fn calendar_for(&self, priority: Priority) -> &Calendar {
        self.calendar(self.inner.policy.calendar_name(priority))
    }

    /// The target of a clock at a priority.
    pub fn target(&self, clock: ClockKind, priority: Priority) -> Option<SignedDuration> {
        self.inner.policy.target(clock, priority)
    }

    fn to_spec(&self) -> BindingSpec {
        BindingSpec {
            set_hash: self.inner.set_hash.clone(),
            policy: self.inner.policy.to_spec(),
            calendars: self
                .inner
                .calendars
                .iter()
                .map(|(n, c)| (n.clone(), c.to_spec()))
                .collect(),
        }
    }

    fn from_spec(spec: &BindingSpec) -> Result<PolicyBinding, PolicyError> {
        let (calendars, known) = build_calendars(&spec.calendars, "binding.calendars")?;
        let policy = Policy::build(&spec.policy, 0, &known)?;
        Ok(PolicyBinding {
            inner: std::sync::Arc::new(BindingData {
                set_hash: spec.set_hash.clone(),
                policy,
                calendars,
            }),
        })
    }
}

impl Serialize for PolicyBinding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_spec().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PolicyBinding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = BindingSpec::deserialize(deserializer)?;
        PolicyBinding::from_spec(&spec).map_err(serde::de::Error::custom)
    }
}

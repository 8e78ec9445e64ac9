//! The IoT registry operations (things, thing groups, memberships), and the registry queries
//! other parts of otatrail build on.
//!
//! For the jobs engine (not recorded: they are not API calls of their own):
//! - [`App::thing_exists`] and [`App::thing_group_exists`]: whether a job target exists;
//! - [`App::things_in_group_recursive`]: every thing a job targeting a group reaches (the
//!   group's things and its descendants', each once, by name).
//!
//! Inside a unit of work of its own, a caller uses the same rules directly:
//! `domain::things::{thing_exists, thing_group_exists, things_in_group_recursive}` on its
//! `StateTx`, and `thing_name_from_arn` / `thing_group_name_from_arn` for job target ARNs.

use std::sync::Arc;

use crate::domain::things::{
    self, CreateThingBody, CreateThingGroupBody, GroupPage, GroupView, ListGroupThingsRequest, ListGroupsRequest,
    ListThingsRequest, MembershipBody, NamePage, THING_GROUP_RESOURCE_TYPE, THING_RESOURCE_TYPE, Thing, ThingGroup,
    ThingPage, UpdateThingBody, UpdateThingGroupBody, thing_arn, thing_group_arn,
};
use crate::domain::ids::time_ordered_id;
use crate::domain::{Scope, ServiceError};
use crate::store;

use super::App;
use super::audit::Call;

impl App {
    pub async fn create_thing(&self, call: &Arc<Call>, name: &str, body: &CreateThingBody) -> Result<Thing, ServiceError> {
        let valid = things::validate_create_thing(name, body)?;
        let (call, now, id) = (call.clone(), self.clock.now(), time_ordered_id());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let t = things::create_thing(tx, &call.scope(), valid, id, now).await?;
                call.record_success(tx, Some(t.created()), vec![call.resource(t.arn(), THING_RESOURCE_TYPE)]).await?;
                Ok(t)
            })
        })
        .await
    }

    pub async fn describe_thing(&self, call: &Arc<Call>, name: &str) -> Result<Thing, ServiceError> {
        let (scope, name) = (call.scope(), name.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { things::describe_thing(tx, &scope, &name).await })).await
    }

    pub async fn update_thing(&self, call: &Arc<Call>, name: &str, body: &UpdateThingBody) -> Result<Thing, ServiceError> {
        let valid = things::validate_update_thing(name, body)?;
        let (call, now) = (call.clone(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let t = things::update_thing(tx, &call.scope(), valid, now).await?;
                call.record_success(tx, None, vec![call.resource(t.arn(), THING_RESOURCE_TYPE)]).await?;
                Ok(t)
            })
        })
        .await
    }

    pub async fn delete_thing(&self, call: &Arc<Call>, name: &str, expected_version: Option<i64>) -> Result<(), ServiceError> {
        let (call, name) = (call.clone(), name.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                things::delete_thing(tx, &scope, &name, expected_version).await?;
                call.record_success(tx, None, vec![call.resource(thing_arn(&scope, &name), THING_RESOURCE_TYPE)]).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn list_things(&self, call: &Arc<Call>, req: ListThingsRequest) -> Result<ThingPage, ServiceError> {
        let scope = call.scope();
        store::read(&*self.store, move |tx| Box::pin(async move { things::list_things(tx, &scope, req).await })).await
    }

    pub async fn create_thing_group(
        &self,
        call: &Arc<Call>,
        name: &str,
        body: &CreateThingGroupBody,
    ) -> Result<ThingGroup, ServiceError> {
        let valid = things::validate_create_group(name, body)?;
        let (call, now, id) = (call.clone(), self.clock.now(), time_ordered_id());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let g = things::create_thing_group(tx, &call.scope(), valid, id, now).await?;
                call.record_success(tx, Some(g.created()), vec![call.resource(g.arn(), THING_GROUP_RESOURCE_TYPE)]).await?;
                Ok(g)
            })
        })
        .await
    }

    pub async fn describe_thing_group(&self, call: &Arc<Call>, name: &str) -> Result<GroupView, ServiceError> {
        let (scope, name) = (call.scope(), name.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { things::describe_thing_group(tx, &scope, &name).await }))
            .await
    }

    pub async fn update_thing_group(
        &self,
        call: &Arc<Call>,
        name: &str,
        body: &UpdateThingGroupBody,
    ) -> Result<ThingGroup, ServiceError> {
        let valid = things::validate_update_group(name, body)?;
        let (call, now) = (call.clone(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let g = things::update_thing_group(tx, &call.scope(), valid, now).await?;
                let out = serde_json::json!({ "version": g.version });
                call.record_success(tx, Some(out), vec![call.resource(g.arn(), THING_GROUP_RESOURCE_TYPE)]).await?;
                Ok(g)
            })
        })
        .await
    }

    pub async fn delete_thing_group(&self, call: &Arc<Call>, name: &str, expected_version: Option<i64>) -> Result<(), ServiceError> {
        let (call, name) = (call.clone(), name.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                things::delete_thing_group(tx, &scope, &name, expected_version).await?;
                let resource = call.resource(thing_group_arn(&scope, &name), THING_GROUP_RESOURCE_TYPE);
                call.record_success(tx, None, vec![resource]).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn list_thing_groups(&self, call: &Arc<Call>, req: ListGroupsRequest) -> Result<GroupPage, ServiceError> {
        let scope = call.scope();
        store::read(&*self.store, move |tx| Box::pin(async move { things::list_thing_groups(tx, &scope, req).await })).await
    }

    /// AddThingToThingGroup (`add` true) or RemoveThingFromThingGroup.
    pub async fn change_thing_group_membership(&self, call: &Arc<Call>, body: &MembershipBody, add: bool) -> Result<(), ServiceError> {
        let valid = things::validate_membership(&call.scope(), body)?;
        let (call, now) = (call.clone(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                if add {
                    things::add_thing_to_group(tx, &scope, &valid, now).await?;
                } else {
                    things::remove_thing_from_group(tx, &scope, &valid).await?;
                }
                let resources = vec![
                    call.resource(thing_group_arn(&scope, &valid.group), THING_GROUP_RESOURCE_TYPE),
                    call.resource(thing_arn(&scope, &valid.thing), THING_RESOURCE_TYPE),
                ];
                call.record_success(tx, None, resources).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn list_things_in_thing_group(
        &self,
        call: &Arc<Call>,
        group: &str,
        req: ListGroupThingsRequest,
    ) -> Result<NamePage, ServiceError> {
        let (scope, group) = (call.scope(), group.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { things::list_things_in_group(tx, &scope, &group, req).await }))
            .await
    }

    pub async fn list_thing_groups_for_thing(
        &self,
        call: &Arc<Call>,
        thing: &str,
        max_results: Option<i64>,
        next_token: Option<String>,
    ) -> Result<NamePage, ServiceError> {
        let (scope, thing) = (call.scope(), thing.to_string());
        store::read(&*self.store, move |tx| {
            Box::pin(async move { things::list_groups_for_thing(tx, &scope, &thing, max_results, next_token).await })
        })
        .await
    }

    /// Whether a thing named `name` exists in `scope` (for the jobs engine; not recorded).
    pub async fn thing_exists(&self, scope: &Scope, name: &str) -> Result<bool, ServiceError> {
        let (scope, name) = (scope.clone(), name.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { things::thing_exists(tx, &scope, &name).await })).await
    }

    /// Whether a thing group named `name` exists in `scope` (for the jobs engine; not recorded).
    pub async fn thing_group_exists(&self, scope: &Scope, name: &str) -> Result<bool, ServiceError> {
        let (scope, name) = (scope.clone(), name.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { things::thing_group_exists(tx, &scope, &name).await }))
            .await
    }

    /// Every thing name of `group` and of all its descendant groups, each once, by name; a
    /// group that does not exist is `ResourceNotFoundException` (for the jobs engine; not
    /// recorded).
    pub async fn things_in_group_recursive(&self, scope: &Scope, group: &str) -> Result<Vec<String>, ServiceError> {
        let (scope, group) = (scope.clone(), group.to_string());
        store::read(&*self.store, move |tx| {
            Box::pin(async move { things::things_in_group_recursive(tx, &scope, &group).await })
        })
        .await
    }
}

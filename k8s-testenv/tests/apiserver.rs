//! The control plane starts, authenticates the admin, enforces RBAC for others, and serves objects.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_testenv::ApiServer;
use kube::api::{Api, ObjectMeta, PostParams};

#[tokio::test]
async fn shared_server_serves_objects_and_enforces_rbac() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.34.4");

    let ns = server.fresh_namespace(&client, "testenv").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let got = cms.get("hello").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    assert!(got.metadata.resource_version.is_some());

    // A user without bindings is forbidden: RBAC is really on.
    let nobody = server.client_as("nobody", &[]).await.unwrap();
    let err = Api::<ConfigMap>::namespaced(nobody, &ns)
        .get("hello")
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );

    assert!(
        std::fs::read_to_string(server.kubeconfig_path())
            .unwrap()
            .contains(server.url())
    );
}

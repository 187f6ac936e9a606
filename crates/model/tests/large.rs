//! A platform team applies thousands of objects at once: the YAML reader's safety budget must not refuse a
//! realistic large stream.

use porin_model::parse_documents;

#[test]
fn a_stream_of_five_thousand_policies_loads() {
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p{i}\n  namespace: ns{}\n\
             spec:\n  podSelector:\n    matchLabels: {{app: a{i}}}\n  ingress:\n    - from:\n        - podSelector: {{}}\n      \
             ports:\n        - port: 80\n",
            i % 50
        ));
    }
    let docs = parse_documents("big.yaml", &text).unwrap();
    assert_eq!(docs.len(), 5000);
    assert_eq!(docs[4999].resource.name(), "p4999");
    assert_eq!(docs[4999].doc, 5000);
}

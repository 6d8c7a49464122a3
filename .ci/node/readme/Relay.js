// The operations the Relay test compiles with relay-compiler (names follow its rules).
graphql`
  query RelayRunsQuery($workflowId: ID!) {
    workflow(id: $workflowId) { id runs { edges { node { id instanceId status } } } }
  }
`;
graphql`
  subscription RelayRunStatusSubscription($workflowId: ID!, $instanceId: ID!) {
    runStatus(workflowId: $workflowId, instanceId: $instanceId) { status run { id status } }
  }
`;

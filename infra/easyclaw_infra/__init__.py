"""The EasyClaw CDK app: network, data, cluster, application and metrics stacks."""

"""The billing cycle over GraphQL: billingRun (operators), setSpendAlert and spend alerts."""

"""Helpers of the integration tests, by topic. conftest.py holds the fixtures and re-exports
every name below, so `from conftest import Agent, wait_until` keeps working.

  paths      ROOT, HERALD (the binary under test), readme_snippet
  wait       wait_until: every wait in the tests is bounded and watches observable state
  agent      next_addr, HTTPResult, Agent (one herald agent on its own loopback address)
  rawsock    raw_http, recv_until_close (raw bytes in and out, every loop with a deadline)
  dns_client dig, kdig, dns_query (against an agent), dns_ask (against any addr:port)
  netns      netns_argv, network namespaces, NsHerald (an agent inside a namespace)
  peers      Peer, Peers, BlackHole: NSD, dnsmasq, BIND, unbound and a silent upstream
  zones      the upstream zones of the recursion and peer tests
  cluster    ClusterAgent, Cluster: several servers forming one Raft cluster
  writers    Writers: threads writing unique keys, what was acknowledged and when
  serf       serf_members: what a real `serf agent` lists
"""

#!/usr/bin/env bash
# A small Internet in Linux network namespaces, for testing kith across NATs.
#
#   testnet.sh up PREFIX [--delay MS] [--loss PCT] [--rate RATE]
#                                                    build it (removes leftovers first)
#   testnet.sh down PREFIX                           remove it (idempotent)
#   testnet.sh check                                 exit 0 if this machine can build it
#
# Namespaces (all named PREFIX-*):
#   inet    the Internet: a router joining every segment below
#   relay   a public host (broker/relay)      10.200.0.2
#   nat1    home 1's router: NAT that allows hole punching (port-preserving masquerade,
#           unsolicited inbound dropped)       WAN 10.201.0.2, LAN 192.168.1.1
#   nat2    home 2's router: the same kind     WAN 10.202.0.2, LAN 192.168.2.1
#   nat3    home 3's router: symmetric NAT (a random port per connection)
#                                             WAN 10.203.0.2, LAN 192.168.3.1
#   h1 h2 h3  one host in each home           192.168.N.2
#
# With --delay/--loss, home 1's WAN link goes through a user-space forwarder in the
# namespace wan1 (scripts/wandelay.py: MS of delay each way) and loses PCT% of packets in
# each direction (nftables numgen random on the inet router). This kernel has no netem.
# With --rate (a tc rate such as 20mbit), home 1's WAN link carries at most RATE each way
# (tc tbf on both ends of the link).
#
# Traffic never leaves the namespaces: they have no link to the host's network.
set -Eeuo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:-}"
P="${2:-kt}"

ns() { ip netns exec "$P-$1" "${@:2}"; }

down() {
    # Stop the forwarder (if any), then delete the namespaces; veths go with them.
    if [ -f "/tmp/$P-wandelay.pid" ]; then
        kill "$(cat "/tmp/$P-wandelay.pid")" 2>/dev/null || true
        rm -f "/tmp/$P-wandelay.pid"
    fi
    for n in inet relay nat1 nat2 nat3 h1 h2 h3 wan1; do
        if ip netns pids "$P-$n" >/dev/null 2>&1; then
            for pid in $(ip netns pids "$P-$n" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        fi
        ip netns del "$P-$n" 2>/dev/null || true
    done
}

check() {
    [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; return 1; }
    command -v ip >/dev/null || { echo "needs iproute2 (ip)"; return 1; }
    command -v nft >/dev/null || { echo "needs nftables (nft)"; return 1; }
    command -v ethtool >/dev/null || { echo "needs ethtool"; return 1; }
    command -v python3 >/dev/null || { echo "needs python3 (delay forwarder)"; return 1; }
    local t="ktchk$$"
    if ! ip netns add "$t" 2>/dev/null; then echo "cannot create network namespaces"; return 1; fi
    if ! ip netns exec "$t" nft add table inet t 2>/dev/null; then
        ip netns del "$t"; echo "nftables does not work in a namespace"; return 1
    fi
    ip netns del "$t"
}

# link NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair between two namespaces.
link() {
    ip link add "$2" netns "$P-$1" type veth peer name "$5" netns "$P-$4"
    ns "$1" ip addr add "$3" dev "$2"
    ns "$4" ip addr add "$6" dev "$5"
    ns "$1" ip link set "$2" up
    ns "$4" ip link set "$5" up
}

# nat N KIND: home N's router and host. KIND is cone or symmetric.
home() {
    local n="$1" kind="$2" wan_peer="$3"
    link "nat$n" lan "192.168.$n.1/24" "h$n" eth0 "192.168.$n.2/24"
    ns "h$n" ip route add default via "192.168.$n.1"
    ns "nat$n" sysctl -qw net.ipv4.ip_forward=1
    ns "nat$n" ip route add default via "$wan_peer"
    local masq="masquerade"
    if [ "$kind" = symmetric ]; then masq="masquerade fully-random"; fi
    ns "nat$n" nft -f - <<EOF
table ip nat {
    chain post { type nat hook postrouting priority srcnat; oifname "wan" $masq; }
}
table inet filter {
    chain forward_c {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" accept
    }
    chain input_c {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state new drop
    }
}
EOF
}

up() {
    local delay=0 loss=0 rate=""
    shift 2 || true
    while [ $# -gt 0 ]; do
        case "$1" in
            --delay) delay="$2"; shift 2 ;;
            --loss) loss="$2"; shift 2 ;;
            --rate) rate="$2"; shift 2 ;;
            *) echo "unknown option $1" >&2; exit 2 ;;
        esac
    done
    down
    trap 'down' ERR
    for n in inet relay nat1 nat2 nat3 h1 h2 h3; do
        ip netns add "$P-$n"
        ns "$n" ip link set lo up
    done
    ns inet sysctl -qw net.ipv4.ip_forward=1
    link inet r0 10.200.0.1/24 relay eth0 10.200.0.2/24
    ns relay ip route add default via 10.200.0.1
    if [ "$delay" != 0 ]; then
        # nat1 <-> wan1 <-> inet: wan1 forwards frames between its two ends, delayed.
        ip netns add "$P-wan1"
        ns wan1 ip link set lo up
        ip link add wan netns "$P-nat1" type veth peer name wa netns "$P-wan1"
        ip link add n1 netns "$P-inet" type veth peer name wb netns "$P-wan1"
        ns nat1 ip addr add 10.201.0.2/24 dev wan
        ns inet ip addr add 10.201.0.1/24 dev n1
        for x in "nat1 wan" "inet n1" "wan1 wa" "wan1 wb"; do
            set -- $x
            ns "$1" ip link set "$2" up
            # Whole frames with finished checksums, so the forwarder can pass them on.
            ns "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
        done
        ip netns exec "$P-wan1" python3 "$here/wandelay.py" wa wb "$delay" \
            >"/tmp/$P-wandelay.log" 2>&1 &
        echo $! >"/tmp/$P-wandelay.pid"
    else
        link inet n1 10.201.0.1/24 nat1 wan 10.201.0.2/24
    fi
    link inet n2 10.202.0.1/24 nat2 wan 10.202.0.2/24
    link inet n3 10.203.0.1/24 nat3 wan 10.203.0.2/24
    home 1 cone 10.201.0.1
    home 2 cone 10.202.0.1
    home 3 symmetric 10.203.0.1
    if [ "$loss" != 0 ]; then
        # PCT% of packets to and from home 1 are dropped, each way.
        local per_mille
        per_mille=$(python3 -c "print(int(float('$loss') * 10))")
        ns inet nft -f - <<EOF
table inet wan {
    chain forward_c {
        type filter hook forward priority filter; policy accept;
        iifname "n1" numgen random mod 1000 < $per_mille drop
        oifname "n1" numgen random mod 1000 < $per_mille drop
    }
}
EOF
    fi
    if [ -n "$rate" ]; then
        command -v tc >/dev/null || { echo "--rate needs tc (iproute2)" >&2; false; }
        # Token bucket each way: home 1 -> Internet on nat1's WAN side, back on inet's.
        ns nat1 tc qdisc add dev wan root tbf rate "$rate" burst 64kb latency 200ms
        ns inet tc qdisc add dev n1 root tbf rate "$rate" burst 64kb latency 200ms
    fi
    trap - ERR
}

case "$cmd" in
    up) up "$@" ;;
    down) down ;;
    check) check ;;
    *) echo "usage: $0 up|down|check PREFIX [--delay MS] [--loss PCT] [--rate RATE]" >&2; exit 2 ;;
esac

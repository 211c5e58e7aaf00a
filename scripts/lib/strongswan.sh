# shellcheck shell=bash
# strongSwan (charon 5.9 + swanctl) in the labs' network namespaces, as
# tests/common/strongswan.rs runs it (sourced after netns.sh, not executed).
#
# One charon per namespace, each with a directory DIR of its own:
#   DIR/strongswan.conf  selected with STRONGSWAN_CONF: its own VICI socket
#                        (DIR/charon.vici) and file log (DIR/charon.log)
#   DIR/run              bind-mounted over /run inside the mount namespace
#                        `ip netns exec` gives charon, so its fixed pid file
#                        /var/run/charon.pid does not collide with another's
#   DIR/swanctl.conf     loaded with `swanctl --load-all` (SWANCTL_DIR=DIR)
#
# These kernels have XFRM but no ESP, so the data plane is kernel-libipsec:
# userspace ESP (always in UDP 4500) on a TUN `ipsec0`, loaded before
# kernel-netlink. With AWS's 0.0.0.0/0 selectors kernel-libipsec installs
# `default dev ipsec0` in table 220 whatever install_routes says, which would
# loop decrypted packets back into the tunnel: that table's rule is moved
# behind main (routing_table_prio = 40000) and the prefixes a tunnel serves
# are routed into ipsec0 in main explicitly (charon_start's PREFIX...).
#
#   swan_ensure                      install strongSwan if a part is missing
#   swan_write_conf DIR              DIR/strongswan.conf
#   swan DIR COMMAND ARGS...         swanctl against that charon (bounded)
#   charon_start NS DIR PIDFILE LOGFILE PREFIX...
#                                    start charon, wait for VICI and ipsec0,
#                                    route PREFIX... into ipsec0
#   charon_stop NS PIDFILE           stop it by PID, wait for ipsec0 to go
#   swan_conf_vgw FILE VGW_ADDR CGW_ID PSK
#                                    swanctl.conf of one AWS VGW tunnel
#   swan_conf_cgw FILE LOCAL_ADDR PUBLIC_ID VGW_ADDR PSK IKE ESP
#                                    swanctl.conf of a customer gateway

SWAN_CHARON=/usr/lib/ipsec/charon
SWAN_LIBIPSEC=/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so
SWAN_OPENSSL=/usr/lib/ipsec/plugins/libstrongswan-openssl.so
SWAN_TUN=ipsec0
SWAN_PLUGINS="random nonce openssl aesni aes sha1 sha2 hmac gcm gmp pem pkcs1 x509 pubkey kdf kernel-libipsec kernel-netlink socket-default vici"
# AWS's default phase 1 and phase 2 proposals (shared/reference/strongswan-vgw)
SWAN_AWS_IKE="aes128-sha1-modp2048,aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256,aes128gcm16-aes256gcm16-prfsha1-prfsha256-prfsha384-prfsha512-modp1024-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256"
SWAN_AWS_ESP="aes128-sha1-modp2048,aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp1536-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256,aes128gcm16-aes256gcm16-modp1024-modp1536-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256"

# swan_ensure : install strongSwan's Debian packages if something is missing
swan_ensure() {
  ensure_commands swanctl:strongswan-swanctl "$SWAN_CHARON":strongswan-charon \
    "$SWAN_OPENSSL":libstrongswan-standard-plugins "$SWAN_LIBIPSEC":libcharon-extra-plugins
}

swan_write_conf() {
  local d=$1
  mkdir -p "$d/run"
  cat >"$d/strongswan.conf" <<EOF
# one charon per network namespace (scripts/lib/strongswan.sh)
charon {
  port = 500
  port_nat_t = 4500
  install_routes = no
  install_virtual_ip = no
  routing_table = 220
  routing_table_prio = 40000
  load_modular = no
  load = $SWAN_PLUGINS
  plugins {
    vici {
      socket = unix://$d/charon.vici
    }
  }
  filelog {
    bench {
      path = $d/charon.log
      time_format = %T
      default = 1
      ike_name = yes
      flush_line = yes
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
}
swanctl {
  load = random openssl pem pkcs1 pkcs8 x509 pubkey
}
EOF
}

# swan DIR COMMAND ARGS... : swanctl COMMAND (it must come first) against the
# charon of DIR, at most 40 s
swan() {
  local d=$1 cmd=$2
  shift 2
  STRONGSWAN_CONF=$d/strongswan.conf SWANCTL_DIR=$d \
    timeout 40 swanctl "$cmd" --uri "unix://$d/charon.vici" "$@" 9>&-
}

charon_start() {
  local ns=$1 d=$2 pf=$3 lf=$4 p
  shift 4
  swan_write_conf "$d"
  rm -f "$d/run/charon.pid" "$d/charon.vici"
  wait_for 5 sh -c "! ip -n '$ns' link show $SWAN_TUN >/dev/null 2>&1" ||
    die "$SWAN_TUN of a previous charon still present in $ns"
  # shellcheck disable=SC2016 # sh -c's own positional parameters
  spawn "$pf" "$lf" "$ns" env STRONGSWAN_CONF="$d/strongswan.conf" \
    sh -c 'mount --bind "$1" /run && exec "$2"' sh "$d/run" "$SWAN_CHARON"
  if ! wait_for_pid "$(cat "$pf")" 15 test -S "$d/charon.vici" ||
    ! wait_for_pid "$(cat "$pf")" 10 swan "$d" --stats >/dev/null 2>&1 ||
    ! wait_for_pid "$(cat "$pf")" 10 ip -n "$ns" link show "$SWAN_TUN" >/dev/null 2>&1; then
    tail -n 20 "$lf" "$d/charon.log" >&2 2>/dev/null || true
    die "charon did not come up in $ns"
  fi
  ip -n "$ns" link set "$SWAN_TUN" up
  for p in "$@"; do ns_route "$ns" "$p" dev "$SWAN_TUN"; done
}

charon_stop() {
  local ns=$1 pf=$2
  kill_pidfile "$pf"
  wait_for 5 sh -c "! ip -n '$ns' link show $SWAN_TUN >/dev/null 2>&1" ||
    log "warning: $SWAN_TUN still present in $ns after charon exited"
}

# PSKs here are lab-only strings of [A-Za-z0-9._] (AWS's alphabet)
swan_check_psk() {
  case $1 in '' | *[!A-Za-z0-9._]*) die "PSK must be [A-Za-z0-9._]" ;; esac
}

# One AWS VGW tunnel (values of shared/reference/strongswan-vgw): AWS's
# default proposal sets, DPD 10 s, replay window 1024, MOBIKE off,
# route-based 0.0.0.0/0 selectors, waiting for the customer gateway, which
# it knows by its public address CGW_ID (also the address it comes from,
# through its NAT).
swan_conf_vgw() {
  local f=$1 vgw=$2 cgw=$3 psk=$4
  swan_check_psk "$psk"
  (umask 077 && cat >"$f") <<EOF
connections {
  aws-vgw {
    version = 2
    local_addrs = $vgw
    remote_addrs = $cgw
    proposals = $SWAN_AWS_IKE
    rekey_time = 28530s
    over_time = 270s
    rand_time = 270s
    dpd_delay = 10s
    encap = no
    mobike = no
    fragmentation = yes
    unique = replace
    local {
      auth = psk
      id = $vgw
    }
    remote {
      auth = psk
      id = $cgw
    }
    children {
      aws-vgw {
        mode = tunnel
        local_ts = 0.0.0.0/0
        remote_ts = 0.0.0.0/0
        esp_proposals = $SWAN_AWS_ESP
        life_time = 3600s
        rekey_time = 3330s
        rand_time = 270s
        replay_window = 1024
        dpd_action = clear
        close_action = none
        start_action = none
      }
    }
  }
}
secrets {
  ike-aws-vgw {
    id-1 = $vgw
    id-2 = $cgw
    secret = "$psk"
  }
}
EOF
}

# A route-based customer gateway (0.0.0.0/0 selectors, as AWS), offering
# exactly IKE and ESP (one proposal each), MOBIKE off, waiting to be
# initiated (swan DIR --initiate --child cgw).
swan_conf_cgw() {
  local f=$1 local_addr=$2 id=$3 vgw=$4 psk=$5 ike=$6 esp=$7
  swan_check_psk "$psk"
  (umask 077 && cat >"$f") <<EOF
connections {
  cgw {
    version = 2
    local_addrs = $local_addr
    remote_addrs = $vgw
    proposals = $ike
    dpd_delay = 10s
    mobike = no
    local {
      auth = psk
      id = $id
    }
    remote {
      auth = psk
      id = $vgw
    }
    children {
      cgw {
        mode = tunnel
        local_ts = 0.0.0.0/0
        remote_ts = 0.0.0.0/0
        esp_proposals = $esp
        replay_window = 1024
        start_action = none
      }
    }
  }
}
secrets {
  ike-cgw {
    id-1 = $id
    id-2 = $vgw
    secret = "$psk"
  }
}
EOF
}

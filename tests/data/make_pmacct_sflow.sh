#!/bin/bash
# Record pmacctd's sfprobe (sFlow v5) exports of the corpus scenarios, the corpus way: pmacctd reads
# the scenario pcap and exports to 127.0.0.1:36343 while tcpdump records the datagrams on lo.
# Usage: make_pmacct_sflow.sh default|sampled INPUTS_DIR OUT_DIR  (then sflow_truth.py --port 36343)
set -u
variant=$1
INPUTS=$2
OUT=$3
port=36343
for sc in dns dual http icmp telnet; do
  out=pmacct_sflow-${variant}_${sc}.pcap
  [ "$variant" = default ] && out=pmacct_sflow_${sc}.pcap
  conf=$OUT/$variant-$sc.conf
  {
    echo "daemonize: false"
    echo "pcap_savefile: $INPUTS/$sc.pcap"
    echo "pcap_savefile_wait: false"
    echo "plugins: sfprobe[sp]"
    echo "sfprobe_receiver[sp]: 127.0.0.1:$port"
    echo "sfprobe_agentip[sp]: 127.0.0.1"
    echo "sfprobe_agentsubid[sp]: 7"
    echo "sfprobe_ifindex[sp]: 3"
    echo "sfprobe_direction[sp]: in"
    [ "$variant" = sampled ] && echo "sampling_rate: 4"
  } > $conf
  tcpdump -i lo -n -U -w $OUT/$out "udp dst port $port and src host 127.0.0.1 and dst host 127.0.0.1" 2>/dev/null &
  tp=$!
  sleep 1
  timeout 60 pmacctd -f $conf > $OUT/$variant-$sc.log 2>&1
  sleep 3
  kill $tp; wait $tp
  echo "$out $(tcpdump -r $OUT/$out 2>/dev/null | wc -l)"
done

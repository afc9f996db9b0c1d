"""A small iptables simulator: exactly the subset lab.kube_proxy.iptables writes, no more.

    rs = Ruleset(local=["172.18.0.3", "127.0.0.0/8"], random=random.Random(1).random, clock=lambda: now)
    rs.restore(base_rules()); rs.restore(render(...))        # iptables-restore --noflush semantics
    rs.restore(render_update(...))                            # -D and -I as well
    out = rs.trace(Packet("10.244.1.3", "10.96.0.100", "tcp", 80), "PREROUTING")
    out.dnat, out.masquerade, out.verdict                     # "10.244.2.2:8080", False, "ACCEPT"

restore() is strict where iptables-restore is: a rule in an undeclared chain, a jump to a chain that
does not exist at COMMIT, an option it does not know, -D of a rule that is not there, -I past the
end, or -X of a chain still referenced is an error (that table is left as it was; the tables before
it, committed, stay changed, as with iptables-restore). trace() follows the first packet of a new
connection the way the kernel does: nat PREROUTING, the routing decision (a local destination goes
to filter INPUT, any other to filter FORWARD and then nat POSTROUTING); or, from a local process,
nat OUTPUT, filter OUTPUT, nat POSTROUTING. Each connection is new: conntrack's later packets skip
nat, so the only state kept between traces is the `recent` module's lists.
"""
from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Callable, Iterable, Optional

BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
VERDICTS = {"ACCEPT", "DROP", "REJECT", "RETURN"}
TARGETS = VERDICTS | {"MARK", "DNAT", "MASQUERADE"}


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str = "tcp"
    dport: int = 80


@dataclass
class Outcome:
    dnat: Optional[str]              # "ip:port" the connection was DNATed to, or None
    masquerade: bool                 # a MASQUERADE fired in nat POSTROUTING
    verdict: str                     # the filter table's: ACCEPT | DROP | REJECT
    path: list[str] = field(default_factory=list)   # every rule that matched, in order

    @property
    def chains(self) -> list[str]:
        return [r.split()[1] for r in self.path]


@dataclass
class Match:
    kind: str                        # src dst proto dport dst-local src-local mark probability recent ctstate
    value: object = None
    negate: bool = False


@dataclass
class Rule:
    chain: str
    text: str
    matches: list[Match]
    target: str
    args: dict[str, object]


# --- parsing ---

def _cidr(text: str) -> IPv4Network:
    return ip_network(text if "/" in text else f"{text}/32", strict=False)


def parse_rule(line: str) -> Rule:
    """One "-A CHAIN ..." line."""
    tokens = shlex.split(line)
    assert tokens[0] == "-A", line
    chain, rest = tokens[1], tokens[2:]
    matches: list[Match] = []
    target, args = None, {}
    negate, i = False, 0

    def value() -> str:
        nonlocal i
        i += 1
        return rest[i]

    while i < len(rest):
        tok = rest[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        if tok in ("-s", "-d"):
            matches.append(Match("src" if tok == "-s" else "dst", _cidr(value()), negate))
        elif tok == "-p":
            matches.append(Match("proto", value(), negate))
        elif tok == "-m":
            module = value()
            if module == "recent":
                matches.append(Match("recent", {}, negate))
        elif tok == "--dport":
            matches.append(Match("dport", int(value()), negate))
        elif tok == "--comment" or tok == "--mode":
            value()
        elif tok in ("--dst-type", "--src-type"):
            assert value() == "LOCAL", line
            matches.append(Match("dst-local" if tok == "--dst-type" else "src-local", None, negate))
        elif tok == "--mark":
            v, m = value().split("/")
            matches.append(Match("mark", (int(v, 16), int(m, 16)), negate))
        elif tok == "--probability":
            matches.append(Match("probability", float(value()), negate))
        elif tok == "--ctstate":
            matches.append(Match("ctstate", set(value().split(",")), negate))
        elif tok in ("--set", "--rcheck", "--reap", "--rsource"):
            matches[-1].value[tok[2:]] = True
        elif tok in ("--seconds", "--name", "--mask"):
            matches[-1].value[tok[2:]] = value()
        elif tok == "-j":
            target = value()
            args = _target_args(rest[i + 1:], line)
            break
        else:
            raise ValueError(f"unknown option {tok!r} in: {line}")
        negate = False
        i += 1
    # a rule without a target only counts (KUBE-FW's last rule): the packet goes on
    return Rule(chain, line, matches, target, args)


def _target_args(tokens: list[str], line: str) -> dict[str, object]:
    args: dict[str, object] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("--to-destination", "--or-mark", "--xor-mark", "--set-xmark", "--reject-with"):
            args[tok[2:]] = tokens[i + 1]
            i += 2
        elif tok == "--random-fully":
            args["random-fully"] = True
            i += 1
        else:
            raise ValueError(f"unknown target option {tok!r} in: {line}")
    return args


# --- the ruleset ---

class Ruleset:
    def __init__(self, local: Iterable[str], random: Callable[[], float] = lambda: 0.0,
                 clock: Callable[[], float] = lambda: 0.0):
        self.local = [_cidr(a) for a in local]
        self.random, self.clock = random, clock
        self.tables: dict[str, dict[str, list[Rule]]] = {t: {c: [] for c in cs} for t, cs in BUILTIN.items()}
        self.recent: dict[str, dict[IPv4Address, float]] = {}

    def restore(self, text: str) -> None:
        """iptables-restore --noflush: each table's lines are applied at its COMMIT, all or nothing."""
        name, work = None, None
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                name = line[1:]
                work = copy.deepcopy(self.tables[name])
            elif line == "COMMIT":
                self._check_jumps(name, work)
                self.tables[name] = work
                name = work = None
            elif line.startswith(":"):
                chain = line[1:].split()[0]
                assert chain not in BUILTIN[name], f"declaring {chain} would reset a builtin chain"
                work[chain] = []                      # creates it, or flushes it
            elif line.startswith("-A "):
                rule = parse_rule(line)
                if rule.chain not in work:
                    raise ValueError(f"rule in a chain that does not exist: {line}")
                work[rule.chain].append(rule)
            elif line.startswith("-I "):
                _, chain, position, rest = line.split(" ", 3)
                rule = parse_rule(f"-A {chain} {rest}")
                if chain not in work or not 1 <= int(position) <= len(work[chain]) + 1:
                    raise ValueError(f"no such chain or position: {line}")
                work[chain].insert(int(position) - 1, rule)
            elif line.startswith("-D "):
                self._delete_rule(work, "-A " + line[3:])
            elif line.startswith("-X "):
                self._delete(work, line.split()[1])
            else:
                raise ValueError(f"unsupported restore line: {line}")
        assert name is None, "missing COMMIT"

    @staticmethod
    def _delete_rule(work: dict[str, list[Rule]], text: str) -> None:
        """-D CHAIN RULE: the first rule written exactly so; iptables-restore fails without one."""
        rules = work.get(text.split()[1], [])
        match = next((i for i, r in enumerate(rules) if r.text == text), None)
        if match is None:
            raise ValueError(f"-D: no such rule: {text}")
        del rules[match]

    @staticmethod
    def _delete(work: dict[str, list[Rule]], chain: str) -> None:
        if work.get(chain):
            raise ValueError(f"-X {chain}: chain is not empty")
        users = [r.text for rules in work.values() for r in rules if r.target == chain]
        if users:
            raise ValueError(f"-X {chain}: still referenced by {users[0]}")
        del work[chain]

    @staticmethod
    def _check_jumps(name: str, work: dict[str, list[Rule]]) -> None:
        for rules in work.values():
            for r in rules:
                if r.target and r.target not in TARGETS and r.target not in work:
                    raise ValueError(f"{name}: jump to a chain that does not exist: {r.text}")

    def chains(self, table: str) -> set[str]:
        return set(self.tables[table])

    # --- tracing ---

    def is_local(self, addr: str) -> bool:
        return any(ip_address(addr) in net for net in self.local)

    def trace(self, packet: Packet, hook: str) -> Outcome:
        """The first packet of a new connection, from outside (PREROUTING) or a local process (OUTPUT)."""
        pkt = Flow(packet.src, packet.dst, packet.proto, packet.dport)
        if hook == "PREROUTING":
            self._walk("nat", "PREROUTING", pkt)
            local = self.is_local(pkt.dst)
            verdict = self._walk("filter", "INPUT" if local else "FORWARD", pkt)
        elif hook == "OUTPUT":
            self._walk("nat", "OUTPUT", pkt)
            local = False
            verdict = self._walk("filter", "OUTPUT", pkt)
        else:
            raise ValueError(hook)
        if verdict == "ACCEPT" and not local:
            self._walk("nat", "POSTROUTING", pkt)
        return Outcome(pkt.dnat, pkt.masquerade, verdict, pkt.path)

    def _walk(self, table: str, chain: str, pkt: "Flow") -> str:
        """Runs a builtin chain: its verdict, the policy (ACCEPT) if nothing decided."""
        verdict = self._run(table, chain, pkt)
        return "ACCEPT" if verdict in (None, "RETURN") else verdict

    def _run(self, table: str, chain: str, pkt: "Flow") -> Optional[str]:
        for rule in self.tables[table][chain]:
            if not all(self._matches(m, pkt) for m in rule.matches):
                continue
            pkt.path.append(rule.text)
            verdict = self._target(table, rule, pkt)
            if verdict is not None:
                return verdict
        return None

    def _target(self, table: str, rule: Rule, pkt: "Flow") -> Optional[str]:
        """None: go on with the next rule; otherwise the chain's verdict."""
        t, a = rule.target, rule.args
        if not t:
            return None
        if t in self.tables[table]:
            verdict = self._run(table, t, pkt)
            return None if verdict in (None, "RETURN") else verdict
        if t == "MARK":
            if "or-mark" in a:
                pkt.mark |= int(a["or-mark"], 16)
            elif "xor-mark" in a:
                pkt.mark ^= int(a["xor-mark"], 16)
            else:
                v, m = (int(x, 16) for x in a["set-xmark"].split("/"))
                pkt.mark = (pkt.mark & ~m) ^ v
            return None
        if t == "DNAT":
            ip, port = a["to-destination"].rsplit(":", 1)
            pkt.dst, pkt.dport, pkt.dnat = ip, int(port), a["to-destination"]
            return "ACCEPT"
        if t == "MASQUERADE":
            pkt.masquerade = True
            return "ACCEPT"
        return t                                           # ACCEPT DROP REJECT RETURN

    def _matches(self, m: Match, pkt: "Flow") -> bool:
        return self._test(m, pkt) != m.negate

    def _test(self, m: Match, pkt: "Flow") -> bool:
        if m.kind == "src":
            return ip_address(pkt.src) in m.value
        if m.kind == "dst":
            return ip_address(pkt.dst) in m.value
        if m.kind == "proto":
            return pkt.proto == m.value
        if m.kind == "dport":
            return pkt.dport == m.value
        if m.kind == "dst-local":
            return self.is_local(pkt.dst)
        if m.kind == "src-local":
            return self.is_local(pkt.src)
        if m.kind == "mark":
            value, mask = m.value
            return pkt.mark & mask == value
        if m.kind == "probability":
            return self.random() < m.value
        if m.kind == "ctstate":
            return bool(m.value & pkt.ctstate)
        if m.kind == "recent":
            return self._recent(m.value, pkt)
        raise AssertionError(m.kind)

    def _recent(self, opts: dict, pkt: "Flow") -> bool:
        assert opts.get("rsource") and opts.get("mask") == "255.255.255.255", opts
        seen = self.recent.setdefault(opts["name"], {})
        src, now = ip_address(pkt.src), self.clock()
        if opts.get("set"):
            seen[src] = now
            return True
        seconds = float(opts["seconds"])
        if opts.get("reap"):
            for addr in [a for a, t in seen.items() if now - t >= seconds]:
                del seen[addr]
        return src in seen and now - seen[src] < seconds


@dataclass
class Flow:
    """The packet as the rules see and change it."""

    src: str
    dst: str
    proto: str
    dport: int
    mark: int = 0
    dnat: Optional[str] = None
    masquerade: bool = False
    path: list[str] = field(default_factory=list)

    @property
    def ctstate(self) -> set[str]:
        return {"NEW", "DNAT"} if self.dnat else {"NEW"}

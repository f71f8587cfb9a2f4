#!/usr/bin/env bash
# os.sh: check, apply and revert the host tuning rocketcore wants (RocketMQ's operator advice plus what a
# thread-per-core io_uring server needs). The settings live as data in tuning/<profile>.profile; the broker
# reads the same files (built into the binary) at startup. tuning/README.md explains every setting.
#
#   ./os.sh [--check] [--profile NAME]               table of setting, current, recommended, status
#   ./os.sh --apply [--profile NAME] [--save FILE]   root only; saves the previous values to FILE first
#   ./os.sh --apply --dry-run  (or just --dry-run)   print the commands --apply would run, change nothing
#   ./os.sh --revert FILE [--dry-run]                restore what --apply saved in FILE
#
# Exit codes: 0 every setting OK (ABSENT = not present on this host, not a failure), 1 some setting drifts,
# 2 usage error or failure (the message says which).
# ROCKETCORE_TUNING_ROOT=DIR prefixes every /proc, /sys and /etc path, so tests can use a fixture tree; with
# it set, --apply/--revert write plain files under DIR instead of calling sysctl and do not need root.
set -euo pipefail
export LC_ALL=C
shopt -s nullglob

PROG=os.sh
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
ROOT=${ROCKETCORE_TUNING_ROOT:-}
ROOT=${ROOT%/}                     # "" and "/" both mean the real host
readonly INF=9223372036854775807   # "unlimited" in ge/le comparisons
readonly SAVE_MAGIC='rocketcore-tuning-save 1'
readonly SYSCTL_DROPIN=/etc/sysctl.d/99-rocketcore.conf
readonly LIMITS_DROPIN=/etc/security/limits.d/99-rocketcore.conf

die() { printf '%s: %s\n' "$PROG" "$1" >&2; exit 2; }
usage_error() { printf '%s: %s (see %s --help)\n' "$PROG" "$1" "$PROG" >&2; exit 2; }
note() { printf '%s\n' "$1"; }

usage() {
    sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------------------------- values

# read_raw FILE: the file's text in REPLY (trailing newlines dropped); fails if unreadable.
read_raw() { REPLY=$(cat -- "$1" 2>/dev/null) || return 1; }

# squash TEXT: the words of the first line joined by ',' (table cells never hold blanks).
squash() {
    local -a w=()
    read -r -a w <<<"$1" || true
    local IFS=,
    printf '%s' "${w[*]}"
}

# selected_choice TEXT: "none [mq-deadline] kyber" -> mq-deadline; a single bare word is itself.
selected_choice() {
    local -a w=()
    local x
    read -r -a w <<<"$1" || true
    for x in "${w[@]}"; do
        if [[ $x == \[*\] ]]; then
            x=${x#\[}
            printf '%s' "${x%\]}"
            return 0
        fi
    done
    if ((${#w[@]} == 1)); then printf '%s' "${w[0]}"; fi
}

# choices TEXT: the offered words of a choice file without brackets, one per line.
choices() {
    local -a w=()
    local x
    read -r -a w <<<"$1" || true
    for x in "${w[@]}"; do
        x=${x#\[}
        printf '%s\n' "${x%\]}"
    done
}

# rerender TEXT TOKEN: how the kernel shows a choice file after TOKEN was written (fixture trees only).
rerender() {
    local out='' x
    while IFS= read -r x; do
        if [[ $x == "$2" ]]; then x="[$x]"; fi
        out+="${out:+ }$x"
    done < <(choices "$1")
    printf '%s' "$out"
}

# to_num VALUE: the number, INF for unlimited/infinity/-1; fails for anything else.
to_num() {
    case $1 in
    unlimited | infinity | -1) printf '%s' "$INF" ;;
    '' | *[!0-9]*) return 1 ;;
    *)
        if ((${#1} > 18)); then printf '%s' "$INF"; else printf '%s' "$((10#$1))"; fi
        ;;
    esac
}

mem_total_kb() {
    local k v rest
    if [[ -r $ROOT/proc/meminfo ]]; then
        while read -r k v rest; do
            if [[ $k == MemTotal: && $v =~ ^[0-9]+$ ]]; then
                printf '%s' "$v"
                return 0
            fi
        done <"$ROOT/proc/meminfo"
    fi
    printf 0
}

# resolve_rec SPEC: the recommended value; mem_pct(P,FLOOR,CAP) = P% of MemTotal kB within [FLOOR, CAP].
resolve_rec() {
    local re='^mem_pct\(([0-9]+),([0-9]+),([0-9]+)\)$' v
    if [[ $1 =~ $re ]]; then
        v=$(($(mem_total_kb) * BASH_REMATCH[1] / 100))
        if ((v < BASH_REMATCH[2])); then v=${BASH_REMATCH[2]}; fi
        if ((v > BASH_REMATCH[3])); then v=${BASH_REMATCH[3]}; fi
        printf '%s' "$v"
    else
        printf '%s' "$1"
    fi
}

# judge COMPARE CURRENT RECOMMENDED: succeeds when CURRENT satisfies RECOMMENDED.
judge() {
    local a n r
    local -a alts=()
    case $1 in
    eq | contains-bracketed)
        IFS=, read -r -a alts <<<"$3" || true
        for a in "${alts[@]}"; do
            if [[ $2 == "$a" ]]; then return 0; fi
        done
        return 1
        ;;
    ge | le)
        n=$(to_num "$2") || return 1
        r=$(to_num "$3") || return 1
        if [[ $1 == ge ]]; then ((n >= r)); else ((n <= r)); fi
        ;;
    *) return 1 ;;
    esac
}

# ---------------------------------------------------------------------------------------------- cpu sets

declare -a CPUSET=()

# add_mask HEX: adds the CPUs of an smp_affinity mask ("ff" or "00000000,0000000f") to CPUSET.
add_mask() {
    local m=${1//,/} i=0 c n b
    m=${m,,}
    if [[ -z $m || $m == *[!0-9a-f]* ]]; then return 1; fi
    while ((${#m} > 0)); do
        c=${m: -1}
        m=${m%?}
        n=$((16#$c))
        for b in 0 1 2 3; do
            if (((n >> b) & 1)); then CPUSET[i * 4 + b]=1; fi
        done
        i=$((i + 1))
    done
}

# add_list "0-3,8": adds the CPUs of a cpu list to CPUSET.
add_list() {
    local part lo hi c
    local -a parts=()
    IFS=, read -r -a parts <<<"$1" || true
    for part in "${parts[@]}"; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
        elif [[ $part =~ ^[0-9]+$ ]]; then
            lo=$part hi=$part
        else
            return 1
        fi
        for ((c = lo; c <= hi; c++)); do CPUSET[c]=1; done
    done
}

# cpuset_list: CPUSET as a compact cpu list ("0-3,8"), "none" when empty.
cpuset_list() {
    local out='' c start=-1 prev=-2
    for c in "${!CPUSET[@]}"; do
        if ((c == prev + 1)); then
            prev=$c
            continue
        fi
        if ((start >= 0)); then out+="${out:+,}$(range_text "$start" "$prev")"; fi
        start=$c prev=$c
    done
    if ((start >= 0)); then out+="${out:+,}$(range_text "$start" "$prev")"; fi
    printf '%s' "${out:-none}"
}
range_text() { if (($1 == $2)); then printf '%s' "$1"; else printf '%s-%s' "$1" "$2"; fi; }

# ---------------------------------------------------------------------------------------------- profile

declare -a P_NAME=() P_KIND=() P_TARGET=() P_REC=() P_CMP=() P_WHY=()
PROFILE_NAME=latency
PROFILE_FILE=

load_profile() {
    local name=$1 line n=0 a b c d e f extra pipes
    if [[ $name == */* ]]; then
        PROFILE_FILE=$name
    elif [[ $name =~ ^[A-Za-z0-9_-]+$ ]]; then
        PROFILE_FILE=$SCRIPT_DIR/tuning/$name.profile
    else
        die "bad profile name '$name'"
    fi
    if [[ ! -r $PROFILE_FILE ]]; then
        local have='' p
        for p in "$SCRIPT_DIR"/tuning/*.profile; do
            p=${p##*/}
            have+=" ${p%.profile}"
        done
        die "no profile '$name' (looked for $PROFILE_FILE; available:${have:- none})"
    fi
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        if [[ -z ${line//[[:space:]]/} || $line =~ ^[[:space:]]*# ]]; then continue; fi
        IFS='|' read -r a b c d e f extra <<<"$line" || true
        pipes=${line//[!|]/}
        if [[ ${#pipes} -ne 5 || -z $f ]]; then die "$PROFILE_FILE line $n: want 6 fields name|kind|target|recommended|compare|why"; fi
        if [[ ! $a =~ ^[A-Za-z0-9._-]+$ ]]; then die "$PROFILE_FILE line $n: bad name '$a'"; fi
        case $b in sysctl | sysfs | limits | irq) ;; *) die "$PROFILE_FILE line $n: unknown kind '$b'" ;; esac
        case $e in eq | ge | le | contains-bracketed | cpus-within) ;; *) die "$PROFILE_FILE line $n: unknown compare '$e'" ;; esac
        if [[ $b == irq && $e != cpus-within || $b != irq && $e == cpus-within ]]; then
            die "$PROFILE_FILE line $n: cpus-within goes with kind irq and only with it"
        fi
        if [[ $b == limits && ! $c =~ ^[^:]+:(soft|hard):[a-z]+$ ]]; then
            die "$PROFILE_FILE line $n: limits target must be domain:soft|hard:item"
        fi
        if [[ $b != limits && $b != sysctl && $c != /* ]]; then die "$PROFILE_FILE line $n: target must be an absolute path"; fi
        P_NAME+=("$a") P_KIND+=("$b") P_TARGET+=("$c") P_REC+=("$d") P_CMP+=("$e") P_WHY+=("$f")
    done <"$PROFILE_FILE"
    if ((${#P_NAME[@]} == 0)); then die "$PROFILE_FILE holds no settings"; fi
}

# ---------------------------------------------------------------------------------------------- evaluation

# One row per checked file: R_* arrays share an index.
declare -a R_NAME=() R_CUR=() R_REC=() R_STATUS=() R_KIND=() R_PATH=() R_KEY=() R_CMP=() R_RAW=()
declare -A CLAIMED=()

add_row() { # name current recommended status kind host-path key compare raw
    R_NAME+=("$1") R_CUR+=("$2") R_REC+=("$3") R_STATUS+=("$4") R_KIND+=("$5")
    R_PATH+=("$6") R_KEY+=("$7") R_CMP+=("$8") R_RAW+=("$9")
}

status_of() { if judge "$1" "$2" "$3"; then printf OK; else printf DRIFT; fi; }

eval_sysctl() { # profile index
    local k=$1 key=${P_TARGET[$1]} path rec cur
    path=/proc/sys/${key//.//}
    rec=$(resolve_rec "${P_REC[k]}")
    if [[ ! -e $ROOT$path ]]; then
        add_row "${P_NAME[k]}" - "$rec" ABSENT sysctl "$path" "$key" "${P_CMP[k]}" ''
    elif ! read_raw "$ROOT$path"; then
        add_row "${P_NAME[k]}" unreadable "$rec" DRIFT sysctl "$path" "$key" "${P_CMP[k]}" ''
    else
        cur=$(squash "$REPLY")
        add_row "${P_NAME[k]}" "${cur:-empty}" "$rec" "$(status_of "${P_CMP[k]}" "$cur" "$rec")" sysctl "$path" "$key" "${P_CMP[k]}" "$REPLY"
    fi
}

# expand TARGET: the host paths (without ROOT) matching TARGET, in C-locale order, in HITS.
declare -a HITS=()
expand() {
    local f
    HITS=()
    # shellcheck disable=SC2206 # TARGET is a glob from the profile and is meant to expand here
    local -a found=("$ROOT"$1)
    for f in "${found[@]}"; do
        if [[ -e $f ]]; then HITS+=("${f#"$ROOT"}"); fi
    done
}

# instance_of TARGET PATH: the path component the first wildcard of TARGET matched ("" without wildcards).
instance_of() {
    local -a t=() p=()
    local i
    IFS=/ read -r -a t <<<"$1" || true
    IFS=/ read -r -a p <<<"$2" || true
    for i in "${!t[@]}"; do
        if [[ ${t[i]} == *[*?]* ]]; then
            printf '%s' "${p[i]:-}"
            return 0
        fi
    done
}

eval_sysfs() { # profile index
    local k=$1 target=${P_TARGET[$1]} rec path inst name cur dev any=0
    rec=$(resolve_rec "${P_REC[k]}")
    expand "$target"
    for path in "${HITS[@]}"; do
        if [[ -n ${CLAIMED[$path]:-} ]]; then continue; fi
        if [[ $path =~ ^/sys/block/([^/]+)/ ]]; then
            dev=${BASH_REMATCH[1]}
            if [[ ! -e $ROOT/sys/block/$dev/device ]]; then continue; fi # loop, ram, zram, dm: not a disk
        fi
        CLAIMED[$path]=1
        any=1
        inst=$(instance_of "$target" "$path")
        name=${P_NAME[k]}${inst:+:$inst}
        if ! read_raw "$ROOT$path"; then
            add_row "$name" unreadable "$rec" DRIFT sysfs "$path" '' "${P_CMP[k]}" ''
            continue
        fi
        if [[ ${P_CMP[k]} == contains-bracketed ]]; then cur=$(selected_choice "$REPLY"); else cur=$(squash "$REPLY"); fi
        add_row "$name" "${cur:-empty}" "$rec" "$(status_of "${P_CMP[k]}" "$cur" "$rec")" sysfs "$path" '' "${P_CMP[k]}" "$REPLY"
    done
    if ((any == 0)); then add_row "${P_NAME[k]}" - "$rec" ABSENT sysfs "$target" '' "${P_CMP[k]}" ''; fi
}

# limits_lookup DOMAIN TYPE ITEM: the value of the last matching line of limits.conf + limits.d/*.conf.
limits_lookup() {
    local f d t i v rest value=''
    local -a files=()
    if [[ -f $ROOT/etc/security/limits.conf ]]; then files+=("$ROOT/etc/security/limits.conf"); fi
    for f in "$ROOT"/etc/security/limits.d/*.conf; do files+=("$f"); done
    for f in "${files[@]}"; do
        while read -r d t i v rest || [[ -n ${d:-} ]]; do
            if [[ -z ${d:-} || $d == \#* ]]; then continue; fi
            if [[ $d == "$1" && ($t == "$2" || $t == -) && $i == "$3" && -n ${v:-} ]]; then value=$v; fi
        done <"$f" || true
    done
    if [[ -z $value ]]; then return 1; fi
    printf '%s' "$value"
}

eval_limits() { # profile index
    local k=$1 dom typ item cur rec
    IFS=: read -r dom typ item <<<"${P_TARGET[$1]}"
    rec=$(resolve_rec "${P_REC[k]}")
    if [[ ! -d $ROOT/etc/security ]]; then
        add_row "${P_NAME[k]}" - "$rec" ABSENT limits /etc/security/limits.conf "${P_TARGET[k]}" "${P_CMP[k]}" ''
    elif cur=$(limits_lookup "$dom" "$typ" "$item"); then
        add_row "${P_NAME[k]}" "$cur" "$rec" "$(status_of "${P_CMP[k]}" "$cur" "$rec")" limits /etc/security/limits.conf "${P_TARGET[k]}" "${P_CMP[k]}" ''
    else
        add_row "${P_NAME[k]}" unset "$rec" DRIFT limits /etc/security/limits.conf "${P_TARGET[k]}" "${P_CMP[k]}" ''
    fi
}

eval_irq() { # profile index: one row, the union of CPUs any IRQ may be delivered to
    local k=$1 path cur status=OK bad=0
    local -a allowed=()
    CPUSET=()
    if ! add_list "${P_REC[k]}"; then die "$PROFILE_FILE: ${P_NAME[k]}: recommended must be a cpu list like 0 or 0-1"; fi
    allowed=("${!CPUSET[@]}")
    expand "${P_TARGET[k]}"
    if ((${#HITS[@]} == 0)); then
        add_row "${P_NAME[k]}" - "${P_REC[k]}" ABSENT irq "${P_TARGET[k]}" '' cpus-within ''
        return 0
    fi
    CPUSET=()
    for path in "${HITS[@]}"; do
        if ! read_raw "$ROOT$path" || ! add_mask "$(squash "$REPLY")"; then bad=1; fi
    done
    cur=$(cpuset_list)
    local -A ok=()
    local c
    for c in "${allowed[@]}"; do ok[$c]=1; done
    for c in "${!CPUSET[@]}"; do
        if [[ -z ${ok[$c]:-} ]]; then status=DRIFT; fi
    done
    if ((bad)); then cur=unreadable status=DRIFT; fi
    add_row "${P_NAME[k]}" "$cur" "${P_REC[k]}" "$status" irq "${P_TARGET[k]}" '' cpus-within ''
}

evaluate() {
    R_NAME=() R_CUR=() R_REC=() R_STATUS=() R_KIND=() R_PATH=() R_KEY=() R_CMP=() R_RAW=()
    CLAIMED=()
    if [[ ! -d $ROOT/proc/sys ]]; then
        die "no ${ROOT:-}/proc/sys: ROCKETCORE_TUNING_ROOT must name a tree with proc/, sys/ and etc/ (or be unset)"
    fi
    local k
    for k in "${!P_NAME[@]}"; do
        "eval_${P_KIND[k]}" "$k"
    done
}

# print_table: the table both os.sh and `rocketcore broker --check-tuning` print; returns 0 or 1.
print_table() {
    local i ok=0 drift=0 absent=0 extra
    printf '%-32s %-16s %-24s %s\n' SETTING CURRENT RECOMMENDED STATUS
    for i in "${!R_NAME[@]}"; do
        extra=''
        case ${R_STATUS[i]} in
        OK) ok=$((ok + 1)) ;;
        DRIFT) drift=$((drift + 1)) ;;
        ABSENT)
            absent=$((absent + 1))
            extra='  not present on this host'
            ;;
        esac
        printf '%-32s %-16s %-24s %s%s\n' "${R_NAME[i]}" "${R_CUR[i]}" "${R_REC[i]}" "${R_STATUS[i]}" "$extra"
    done
    printf 'summary: %d OK, %d DRIFT, %d ABSENT (profile %s)\n' "$ok" "$drift" "$absent" "$PROFILE_NAME"
    if ((drift > 0)); then return 1; fi
    return 0
}

# ---------------------------------------------------------------------------------------------- apply

declare -a ACTIONS=() SAVES=() ADVICE=()
SAVE_PATH=

need_privilege() {
    if [[ -z $ROOT && $EUID -ne 0 ]]; then
        die "$1 changes kernel settings and needs root: run it with sudo (nothing was changed)"
    fi
}

# quoted command that writes TEXT (plus a newline) to FILE.
write_cmd() { printf "printf '%%s\\\\n' %q > %q" "$2" "$1"; }

first_alt() { printf '%s' "${1%%,*}"; }

plan_dropin() { # host-path content
    local dir=${1%/*}
    if [[ ! -d $ROOT$dir ]]; then
        SAVES+=("dir|$dir|-")
        ACTIONS+=("mkdir -p $(printf %q "$ROOT$dir")")
    fi
    SAVES+=("file|$1|-")
    ACTIONS+=("$(write_cmd "$ROOT$1" "$2")")
}

plan_apply() {
    local i val tok sysctl_text='' limits_text='' sysctl_drift=0 limits_drift=0 dom typ item
    local header="# Written by rocketcore os.sh --apply (profile $PROFILE_NAME); undo with os.sh --revert $SAVE_PATH"
    for i in "${!R_NAME[@]}"; do
        val=$(first_alt "${R_REC[i]}")
        case ${R_KIND[i]} in
        sysctl)
            if [[ ${R_STATUS[i]} == ABSENT ]]; then continue; fi
            if [[ ${R_STATUS[i]} == DRIFT ]]; then
                sysctl_drift=1
                SAVES+=("sysctl|${R_PATH[i]}|${R_KEY[i]}")
                if [[ -n $ROOT ]] || ! command -v sysctl >/dev/null 2>&1; then
                    ACTIONS+=("$(write_cmd "$ROOT${R_PATH[i]}" "$val")")
                else
                    ACTIONS+=("sysctl -q -w $(printf %q "${R_KEY[i]}=$val")")
                fi
            else
                val=${R_CUR[i]//,/ }
            fi
            sysctl_text+="${R_KEY[i]} = $val"$'\n'
            ;;
        sysfs)
            if [[ ${R_STATUS[i]} != DRIFT ]]; then continue; fi
            if [[ ${R_CMP[i]} == contains-bracketed ]]; then
                tok=''
                local -a alts=()
                IFS=, read -r -a alts <<<"${R_REC[i]}" || true
                for val in "${alts[@]}"; do
                    if choices "${R_RAW[i]}" | grep -qxF -- "$val"; then tok=$val && break; fi
                done
                if [[ -z $tok ]]; then
                    ADVICE+=("cannot apply ${R_NAME[i]}: the kernel offers $(squash "$(choices "${R_RAW[i]}" | tr '\n' ' ')"), none of ${R_REC[i]}")
                    continue
                fi
                val=$tok
            fi
            SAVES+=("sysfs|${R_PATH[i]}|-")
            if [[ -n $ROOT && ${R_CMP[i]} == contains-bracketed ]]; then
                ACTIONS+=("$(write_cmd "$ROOT${R_PATH[i]}" "$(rerender "${R_RAW[i]}" "$val")")")
            else
                ACTIONS+=("echo $(printf %q "$val") > $(printf %q "$ROOT${R_PATH[i]}")")
            fi
            ;;
        limits)
            if [[ ${R_STATUS[i]} == ABSENT ]]; then continue; fi
            if [[ ${R_STATUS[i]} == DRIFT ]]; then limits_drift=1; else val=${R_CUR[i]}; fi
            IFS=: read -r dom typ item <<<"${R_KEY[i]}"
            limits_text+="$dom $typ $item $val"$'\n'
            ;;
        irq)
            if [[ ${R_STATUS[i]} == DRIFT ]]; then
                ADVICE+=("${R_NAME[i]} is check-only: IRQs may run on CPUs ${R_CUR[i]}; keep them on ${R_REC[i]} (stop irqbalance or set IRQBALANCE_BANNED_CPULIST to the shard cores, then write masks to /proc/irq/N/smp_affinity)")
            fi
            ;;
        esac
    done
    if ((sysctl_drift)) && [[ -d $ROOT/etc ]]; then plan_dropin "$SYSCTL_DROPIN" "$header"$'\n'"${sysctl_text%$'\n'}"; fi
    if ((limits_drift)); then plan_dropin "$LIMITS_DROPIN" "$header"$'\n'"${limits_text%$'\n'}"; fi
}

# write_save FILE: records, for every file --apply will touch, whether it existed and its exact bytes.
write_save() {
    local file=$1 entry kind path key dir
    dir=$(dirname -- "$file")
    mkdir -p -- "$dir" 2>/dev/null || die "cannot create $dir for the save file"
    if ! (set -C && : >"$file") 2>/dev/null; then die "save file $file exists or cannot be created; pick another with --save FILE"; fi
    {
        printf '# rocketcore os.sh saved values; restore with: os.sh --revert %s\n' "$file"
        printf '%s\n' "$SAVE_MAGIC"
        printf 'root=%s\n' "${ROOT:-/}"
        printf 'profile=%s\n' "$PROFILE_NAME"
        for entry in "${SAVES[@]}"; do
            IFS='|' read -r kind path key <<<"$entry"
            if [[ -e $ROOT$path ]]; then
                printf '%s|%s|%s|present|%s\n' "$kind" "$path" "$key" "$(base64 -w0 <"$ROOT$path")"
            else
                printf '%s|%s|%s|absent|\n' "$kind" "$path" "$key"
            fi
        done
    } >"$file" || die "cannot write save file $file (nothing was changed)"
}

# run_actions DRY: prints each command; runs it unless DRY. Returns the number of failures.
run_actions() {
    local cmd err failed=0 verb=applied
    if (($1)); then verb=would-run; fi
    for cmd in "${ACTIONS[@]}"; do
        printf '%s: %s\n' "$verb" "$cmd"
        if (($1)); then continue; fi
        if ! err=$(eval "$cmd" 2>&1); then
            printf '%s: failed: %s: %s\n' "$PROG" "$cmd" "$(squash "$err" | tr , ' ')" >&2
            failed=$((failed + 1))
        fi
    done
    return "$failed"
}

do_apply() {
    local dry=$1 save=$2 failed=0 a
    if ((!dry)); then need_privilege --apply; fi
    evaluate
    if [[ -z $save ]]; then
        save=$ROOT/var/lib/rocketcore/tuning/saved-$(date +%Y%m%dT%H%M%S)-$$.txt
    fi
    SAVE_PATH=$save
    plan_apply
    if ((${#ACTIONS[@]} == 0)); then
        note "nothing to apply: every setting os.sh can change already matches profile $PROFILE_NAME"
    elif ((dry)); then
        note "would save previous values to: $save"
        run_actions 1 || true
    else
        write_save "$save"
        note "saved previous values to: $save"
        run_actions 0 || failed=$?
    fi
    for a in "${ADVICE[@]}"; do note "advisory: $a"; done
    if ((dry)); then return 0; fi
    evaluate
    if ((failed > 0)); then
        print_table || true
        die "$failed change(s) failed (see above); undo the rest with: $PROG --revert $save"
    fi
    print_table
}

# ---------------------------------------------------------------------------------------------- revert

do_revert() {
    local dry=$1 file=$2 line n=0 kind path key state b64 val
    local entry_re='^(sysctl|sysfs|file|dir)[|]/[^|]*[|][^|]*[|](present|absent)[|][A-Za-z0-9+/=]*$'
    local -a entries=()
    if ((!dry)); then need_privilege --revert; fi
    [[ -r $file ]] || die "cannot read save file $file"
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        case $n:$line in
        1:\#*) continue ;;
        2:"$SAVE_MAGIC") continue ;;
        2:*) die "$file is not an os.sh save file (line 2 should be '$SAVE_MAGIC')" ;;
        3:root=*)
            if [[ ${line#root=} != "${ROOT:-/}" ]]; then
                die "$file was saved for root ${line#root=}, but ROCKETCORE_TUNING_ROOT is ${ROOT:-/}"
            fi
            continue
            ;;
        3:*) die "$file line 3 should be root=..." ;;
        4:profile=*) continue ;;
        esac
        if [[ ! $line =~ $entry_re ]]; then
            die "$file line $n is not a saved value"
        fi
        entries+=("$line")
    done <"$file"
    ((n >= 4)) || die "$file is not an os.sh save file (too short)"
    ACTIONS=()
    local i
    for ((i = ${#entries[@]} - 1; i >= 0; i--)); do # undo in reverse order: files before their directories
        IFS='|' read -r kind path key state b64 <<<"${entries[i]}"
        local target=$ROOT$path
        case $kind:$state in
        dir:absent) ACTIONS+=("rmdir $(printf %q "$target")") ;;
        file:absent) ACTIONS+=("rm -f $(printf %q "$target")") ;;
        dir:present) ;;
        sysctl:absent | sysfs:absent) ;;
        file:present) ACTIONS+=("base64 -d <<<$(printf %q "$b64") > $(printf %q "$target")") ;;
        sysctl:present | sysfs:present)
            if [[ -n $ROOT ]]; then
                ACTIONS+=("base64 -d <<<$(printf %q "$b64") > $(printf %q "$target")")
            elif [[ $kind == sysctl ]]; then
                val=$(base64 -d <<<"$b64")
                ACTIONS+=("sysctl -q -w $(printf %q "$key=$(squash "$val" | tr , ' ')")")
            else
                val=$(base64 -d <<<"$b64")
                if [[ $val == *\[*\]* ]]; then val=$(selected_choice "$val"); else val=$(squash "$val"); fi
                ACTIONS+=("echo $(printf %q "$val") > $(printf %q "$target")")
            fi
            ;;
        esac
    done
    local failed=0
    run_actions "$dry" || failed=$?
    if ((failed > 0)); then die "$failed restore(s) failed (see above)"; fi
    if ((!dry)); then note "restored ${#entries[@]} saved value(s) from $file"; fi
}

# ---------------------------------------------------------------------------------------------- main

# pick_mode CURRENT WANTED: WANTED, unless another mode was already chosen.
pick_mode() {
    if [[ -n $1 && $1 != "$2" ]]; then usage_error "--$2 cannot be combined with --$1"; fi
    printf '%s' "$2"
}

main() {
    local mode='' dry=0 save='' revert_file=''
    while (($# > 0)); do
        case $1 in
        --check | --apply) mode=$(pick_mode "$mode" "${1#--}") ;;
        --revert)
            (($# >= 2)) || usage_error "--revert needs the save file --apply printed"
            mode=$(pick_mode "$mode" revert)
            revert_file=$2
            shift
            ;;
        --profile)
            (($# >= 2)) || usage_error "--profile needs a name (latency, throughput)"
            PROFILE_NAME=$2
            shift
            ;;
        --save)
            (($# >= 2)) || usage_error "--save needs a file name"
            save=$2
            shift
            ;;
        --dry-run) dry=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) usage_error "unknown option '$1'" ;;
        esac
        shift
    done
    if [[ -z $mode ]]; then if ((dry)); then mode=apply; else mode=check; fi; fi
    if [[ $mode == check && $dry -eq 1 ]]; then usage_error "--dry-run goes with --apply or --revert, not --check"; fi
    if [[ -n $save && $mode != apply ]]; then usage_error "--save goes with --apply"; fi
    case $mode in
    check)
        load_profile "$PROFILE_NAME"
        evaluate
        print_table
        ;;
    apply)
        load_profile "$PROFILE_NAME"
        do_apply "$dry" "$save"
        ;;
    revert) do_revert "$dry" "$revert_file" ;;
    esac
}

main "$@"

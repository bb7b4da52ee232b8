# bash completion for efsctl
_efsctl() {
  local cur prev verbs
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  verbs="add attach detach list status stop reload takeover doctor version"
  case "$prev" in
    --socket|--config) COMPREPLY=( $(compgen -f -- "$cur") ); return 0 ;;
    --wait) return 0 ;;
    -o) COMPREPLY=( $(compgen -W "tls tlsport= region= az= mounttargetip= cafile= verify= ocsp noocsp netns=" -- "$cur") ); return 0 ;;
    status|stop)
      local ids
      ids=$(efsctl list --json 2>/dev/null | sed -n 's/.*"fs_id": "\(fs-[0-9a-f]*\)".*/\1/p')
      COMPREPLY=( $(compgen -W "$ids" -- "$cur") ); return 0 ;;
    detach|takeover) COMPREPLY=( $(compgen -d -- "$cur") ); return 0 ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "--socket --config --wait --json --force --all -o --help" -- "$cur") )
    return 0
  fi
  local i verb=""
  for (( i=1; i<COMP_CWORD; i++ )); do
    case "${COMP_WORDS[i]}" in add|attach|detach|list|status|stop|reload|takeover|doctor|version) verb="${COMP_WORDS[i]}";; esac
  done
  if [[ -z "$verb" ]]; then
    COMPREPLY=( $(compgen -W "$verbs" -- "$cur") )
  elif [[ "$verb" == attach ]]; then
    COMPREPLY=( $(compgen -d -- "$cur") )
  fi
  return 0
}
complete -F _efsctl efsctl

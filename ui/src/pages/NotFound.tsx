import { Link } from "@tanstack/react-router";
import { Empty } from "../components/States";

export function NotFound() {
  return (
    <Empty title="No such page" icon="?">
      <Link to="/logs" className="text-accent underline">Go to the log explorer</Link>
    </Empty>
  );
}

import { forwardRef, type ButtonHTMLAttributes } from "react";
import { cn } from "../../lib/cn";

type Variant = "primary" | "default" | "ghost" | "danger";
const VARIANTS: Record<Variant, string> = {
  primary: "bg-accent text-white border-accent hover:bg-[#a8380a]",
  default: "bg-panel text-fg border-border hover:bg-bg",
  ghost: "bg-transparent border-transparent text-muted hover:text-fg hover:bg-black/5",
  danger: "bg-panel text-err border-border hover:bg-err-soft",
};

export const Button = forwardRef<HTMLButtonElement, ButtonHTMLAttributes<HTMLButtonElement> & { variant?: Variant; size?: "sm" | "md" }>(
  function Button({ className, variant = "default", size = "md", type = "button", ...props }, ref) {
    return (
      <button
        ref={ref}
        type={type}
        className={cn(
          "inline-flex items-center justify-center gap-1.5 rounded-md border font-medium whitespace-nowrap transition-colors disabled:opacity-50 disabled:pointer-events-none",
          size === "sm" ? "h-7 px-2 text-xs" : "h-8 px-3 text-sm",
          VARIANTS[variant], className)}
        {...props}
      />
    );
  });
